"""`minifrrn bench`: not implemented yet."""
from . import NotImplementedCommand


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedCommand("'minifrrn bench' is not implemented yet")
