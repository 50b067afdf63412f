"""The whitepaper: notebook parameters, the papermill pipeline, sections, figures and the PDF."""
