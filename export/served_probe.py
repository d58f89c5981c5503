"""What an exported SavedModel returns when TensorFlow alone loads it, as TF Serving does.

    python export/served_probe.py EXPORT_DIR REQUESTS.npz REPLIES.npz

REQUESTS.npz holds `inputs` (raw values for `classify`), `labels` and `seeds`
(int32, for `synthesize`). REPLIES.npz gets `classify`'s outputs for the inputs
(by output name), `synthesize`'s outputs (`synthesized_` + name) and
`classify`'s outputs for the samples (`samples_` + name). It prints, as JSON,
which keras_icn modules the process had imported: none may be needed to serve.
`export/check_export.py` runs it in a fresh process. It imports only TensorFlow
and NumPy (TensorFlow's loader may import Keras itself).
"""

import json
import sys

import numpy as np
import tensorflow as tf

BATCH = 500


def call(signature, batch=BATCH, **inputs):
    """`signature` over `inputs` in batches: `{output name: numpy array}`."""
    size = len(next(iter(inputs.values())))
    parts = [signature(**{k: tf.constant(v[i:i + batch]) for k, v in inputs.items()})
             for i in range(0, size, batch)]
    return {name: np.concatenate([p[name].numpy() for p in parts]) for name in parts[0]}


def main(export_dir, requests_path, replies_path):
    loaded = tf.saved_model.load(export_dir)
    classify, synthesize = loaded.signatures["classify"], loaded.signatures["synthesize"]
    (name,) = classify.structured_input_signature[1]  # "images", or "inputs"
    requests = np.load(requests_path)
    replies = call(classify, **{name: requests["inputs"]})
    synthesized = call(synthesize, labels=requests["labels"], seeds=requests["seeds"])
    replies.update({f"synthesized_{k}": v for k, v in synthesized.items()})
    samples = synthesized[name]
    replies.update({f"samples_{k}": v for k, v in call(classify, **{name: samples}).items()})
    with open(replies_path, "wb") as file:
        np.savez(file, **replies)
    print(json.dumps({"input_name": name, "signatures": sorted(loaded.signatures),
                      "keras_icn_modules": sorted(m for m in sys.modules
                                                  if m.split(".")[0] == "keras_icn")}))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
