"""How it is asked: arrival schedules, the users that drive a level, client processes, the busy-machine guard."""
