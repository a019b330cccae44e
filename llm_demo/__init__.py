"""Fine-tuning a small causal language model with zeroth-order optimizers.

``llm_demo.corpus`` generates the bundled pre-training corpus and sentiment task, ``llm_demo.pretrain``
builds the bundled tiny OPT model from nothing, and ``llm_demo.tasks`` loads a model and a task and
scores prompts on verbalizer tokens (the loss that the optimizers minimise).
"""
