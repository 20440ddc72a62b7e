"""The folk-tune generator: tokenizer, model and decoder, prompts, training, evaluation, quality measures."""
