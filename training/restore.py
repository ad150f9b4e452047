"""`train.ft_init_ckpt`: initial weights from a run, an automl checkpoint or a Keras file."""

from __future__ import annotations

from collections.abc import Callable

from efficientnetv2.pretrained import copy_layers, layer_values, load_pretrained
from efficientnetv2.run_folder import is_run, restore_model


def load_initial_weights(model, path: str, model_name: str | None, use_ema: bool = True,
                         log: Callable[[str], None] = print) -> None:
    """`train.ft_init_ckpt`: copies weights into `model` layer by layer (by name), with a new
    classifier when the class counts differ. `path`: a run folder or checkpoint of this
    project (its EMA weights with `use_ema`), an automl checkpoint, or a Keras weight file."""
    if not is_run(path):
        log(f"initialised {load_pretrained(model, model_name, path, use_ema)}")
        return
    source = restore_model(path, use_ema)
    values = layer_values(source.model)
    origin = f"the {'EMA ' if source.ema else ''}weights of {source.checkpoint}"
    log(f"initialised {copy_layers(model, values, origin)}")
