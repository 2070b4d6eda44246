"""`minifrrn eval`: not implemented yet."""
from . import NotImplementedCommand


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedCommand("'minifrrn eval' is not implemented yet")
