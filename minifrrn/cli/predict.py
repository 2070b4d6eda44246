"""`minifrrn predict`: not implemented yet."""
from . import NotImplementedCommand


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedCommand("'minifrrn predict' is not implemented yet")
