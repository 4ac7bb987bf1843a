"""Developer tooling the daemon never imports: the local control plane, replay, the simulator.

- ``devcluster``, ``pki``, ``assets/``: etcd, kube-apiserver, KWOK and friends built from Go
  modules and run on 127.0.0.1 (the certificates need the ``dev`` extra's ``cryptography``);
- ``replay``: a real workflow run on a cluster, pod by pod, as its engine would submit it;
- ``simulate``: the offline simulator of the scheduling core.
"""
