import sys, json, keras, numpy as np
from keras_icn import data, datasets
workdir = sys.argv[1]
model = keras.models.load_model(f"{workdir}/model.keras")
ds = datasets.open_dataset("cifar10", "/work/shared/datasets/tfds")
test = data.eval_pipeline(ds.examples("test", model), 1000)
for flips in (False, True):
    model.test_time_flips = flips
    model.compile(optimizer=model.optimizer, jit_compile=False)
    r = model.evaluate(test, return_dict=True, verbose=0)
    print(json.dumps({"test_time_flips": flips, "accuracy": float(np.mean(r["accuracy"]))}), flush=True)
