"""Fleet: the same profile, evaluate and recommend requests run on the machines of a Ray cluster, their rows brought
back into this machine's store. Ray (the `fleet` extra) is imported only by fleet.cluster, when a command connects.

cluster (connect, probe the address first, the nodes, cancel on Ctrl-C) · probe (what each node offers, run there)
· kinds (nodes grouped into kinds of machine; --on) · jobs (THE seam: a profile or evaluate job as a remote call and
back) · weights (the hub files a node lacks, shipped through the object store) · profiling · evaluating · advising
(recommend per kind)
"""
