"""bench/peer_common.py: what the CPU peers (peer_torch.py, peer_torch_decode.py,
peer_tokenizers.py) share: importing the library they measure, or reporting
the peer missing, and the process's CPU time.
"""
import importlib
import os
import resource


def import_peer(name):
    """The module `name`, or None after printing "peer_missing <why>": a peer
    that cannot run is reported missing, never invented."""
    try:
        return importlib.import_module(name)
    except Exception as e:
        print("peer_missing %s" % str(e).replace("\n", " "))
        return None


def import_torch(threads):
    """torch seeded with 0 on `threads` threads, after printing its "version"
    and "threads" lines; None when it cannot be imported (see import_peer)."""
    # Debian's torch runs its own OpenMP threads beside OpenBLAS's pthreads, which
    # do the matmuls; with OpenMP's default (active) waiting, the idle OpenMP
    # threads spin on the cores OpenBLAS needs (the 25M training step ran at ~40%
    # of its speed that way on 2 cores). Passive waiting is the peer at its best;
    # set OMP_WAIT_POLICY to override. Read when torch loads libgomp, so set here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch = import_peer("torch")
    if torch is None:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    print("version %s" % torch.__version__)
    print("threads %d" % torch.get_num_threads())
    return torch


def cpu_seconds():
    """User + system CPU time of this process so far."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
