"""`python -m jaxgd`: the command line."""

from jaxgd.front.cli import command

command()
