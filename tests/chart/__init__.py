"""Chart tier: the Helm chart, the dashboard and the Dockerfile (a package, so that its control
plane fixture is package-scoped and stops before the next tier starts)."""
