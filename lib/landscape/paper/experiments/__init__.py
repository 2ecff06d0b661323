"""One module per chapter: a frozen dataclass of its sizes, `PROFILES = {"smoke": ..., "paper": ..., "full": ...}`,
pure functions that return DataFrames, and the chapter's verdict rules as tested functions."""
