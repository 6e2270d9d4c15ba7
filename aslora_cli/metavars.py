"""What help screens show for an option's value where typer would print a Python type (`<bool>`)."""

FLAG = ""
"""A flag takes no value, so its help line shows no placeholder."""
