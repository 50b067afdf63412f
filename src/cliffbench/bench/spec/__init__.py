"""What a study file says, validated: the study, its level sets' workloads and loads, the SLO, the cliff search."""
