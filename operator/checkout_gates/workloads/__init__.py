"""The Workload port and its adapters: the Deployment a rollout releases, and its stable copy."""
