"""The classifier head every method shares: where it is, what it reads, how its bias starts."""
from __future__ import annotations


def head_parameters(model) -> list:
    """The classifier head's trainable parameters (peft: the trained copy)."""
    return [p for p in head_module(model).parameters() if p.requires_grad]


def head_module(model):
    # Every sequence-classification head of the encoders used here is named `classifier`.
    head = getattr(model, "classifier", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no `classifier` head; unsupported model")
    return head


# Which encoder output each head reads: XLM-R's and RoBERTa's head the first token's state
# (output 0, position 0), BERT's the pooler output (output 1; the hub's multilingual-e5-small
# is a BERT checkpoint). Mean pooling puts the mean there, so every method keeps the same head
# and parameter names.
MEAN_POOLING_SLOT = {"xlm-roberta": 0, "roberta": 0, "bert": 1}


def masked_mean(hidden, mask):
    """The mean of the token states over the real tokens (mask 1), padding excluded."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def pool_by_mean(model) -> None:
    """Make the head read the masked mean of the token states.

    A forward hook on the encoder writes the mean where the head reads; padding is excluded
    through the attention mask, so scores do not depend on how a batch is padded."""
    import torch

    slot = MEAN_POOLING_SLOT.get(model.config.model_type)
    if slot is None:
        raise ValueError(f"pooling: mean supports the {', '.join(MEAN_POOLING_SLOT)} heads, "
                         f"not {model.config.model_type}; use pooling: cls")

    def hook(module, args, kwargs, output):
        hidden = output[0]
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(hidden.shape[:2], device=hidden.device)
        # The adapters library's Parallel composition runs the batch once per adapter, stacked.
        mask = mask.repeat(hidden.shape[0] // mask.shape[0], 1)
        # A soft prompt extends the mask at the front; skip_virtual_tokens has already cut
        # the virtual tokens' states, so the text's part of the mask goes with the rest.
        mean = masked_mean(hidden, mask[:, mask.shape[1] - hidden.shape[1]:])
        value = torch.cat([mean.unsqueeze(1), hidden[:, 1:]], dim=1) if slot == 0 else mean
        if isinstance(output, tuple):
            return (*output[:slot], value, *output[slot + 1:])
        output[list(output.keys())[slot]] = value
        return output

    model.base_model.register_forward_hook(hook, with_kwargs=True)


def skip_virtual_tokens(model, count: int) -> None:
    """Make the head read the text, not the `count` virtual tokens a soft prompt (prompt
    tuning, p-tuning) prepends: peft and the adapters library put them before the first
    token, where the head of XLM-R (position 0) and BERT's pooler would read a virtual
    token. A forward hook on the encoder cuts their states from its output (and recomputes
    BERT's pooler on the text's first token); register it before `pool_by_mean`."""
    if count == 0:
        return
    slot = MEAN_POOLING_SLOT.get(model.config.model_type)
    if slot is None:
        raise ValueError(f"soft prompts support the {', '.join(MEAN_POOLING_SLOT)} heads, "
                         f"not {model.config.model_type}")

    def hook(module, args, kwargs, output):
        replaced = {0: output[0][:, count:]}
        if slot == 1:   # BERT's pooler read a virtual token: pool the text's first token
            replaced[1] = module.pooler(replaced[0])
        if isinstance(output, tuple):
            return tuple(replaced.get(i, value) for i, value in enumerate(output))
        keys = list(output.keys())
        for i, value in replaced.items():
            output[keys[i]] = value
        return output

    model.base_model.register_forward_hook(hook, with_kwargs=True)


def output_layers(model, n_labels: int) -> list:
    """The head's output layer(s): its linear layers with one output per label (peft keeps a
    frozen copy of the head beside the trained one, so there may be two)."""
    import torch

    layers = [m for m in head_module(model).modules()
              if isinstance(m, torch.nn.Linear) and m.out_features == n_labels]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no output layer with {n_labels} outputs "
                         "in the classifier head")
    return layers


def set_output_layer(model, weight, bias) -> None:
    """Overwrite the head's output layer(s) with `weight` [labels, inputs] (None: keep) and
    `bias` [labels]."""
    import torch

    with torch.no_grad():
        for layer in output_layers(model, len(bias)):
            if weight is not None:
                layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
            layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))


def set_head_bias_to_prior(model, gold, multilabel: bool) -> None:
    """Start the head's output bias at the training labels' log prior (log-odds for multilabel),
    so that a short run spends its steps on the text, not on learning the base rates (Adam
    moves a bias by about one learning rate per step). `gold`: class ids or a multi-hot matrix."""
    from peft_utils.classification.imbalance import log_prior

    set_output_layer(model, None, log_prior(gold, multilabel, model.config.num_labels))
