"""The trainer: recipes (grpo.py) wiring pure components (rollout/, advantages, losses, rewards, config).

Nothing of the project imports this package; it reaches the verifier only through
`verifier_service.client`. torch is imported only here.
"""
