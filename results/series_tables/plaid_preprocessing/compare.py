"""How PLAID's series should be scaled, and FCN against the 1-D ResNet, on a
validation split (the last 20% of the training series, stratified, seed 0):
plain Keras, baseline cross-entropy, 40 epochs, batch 16, Adam 1e-3, one run each.
Validation accuracy (last, best, mean of the last five epochs) and seconds.

    python results/series_tables/plaid_preprocessing/compare.py VARIANT NETWORK [EPOCHS]

VARIANT: dataset256 (one mean and std for all series), series256 (each series
z-normalized), log256 (a signed log transform), series512 (512 steps), pad1344
(z-normalized, zero-padded to the longest). output.txt holds what it printed
(AMD EPYC Zen 4, family 25 model 17, 2 cores, with other runs beside it: the
seconds compare only roughly). The pad1344 run was stopped unfinished.
"""
import sys, time, numpy as np, keras
from keras_icn import sources, networks
from sklearn.model_selection import train_test_split
variant, net = sys.argv[1], sys.argv[2]
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
paths = sources._sktime_ts("PLAID")
cases, labels, order = sources._read_ts(paths[0])
y = np.array([int(l) for l in labels])
series = [np.asarray(c[0], np.float64) for c in cases]
def znorm(s): return (s - s.mean()) / (s.std() + 1e-8)
def resample(s, t): return np.interp(np.linspace(0, len(s) - 1, t), np.arange(len(s)), s)
if variant == "dataset256":
    x = np.stack([resample(s, 256) for s in series]); x = (x - x.mean()) / x.std()
elif variant == "series256":
    x = np.stack([znorm(resample(s, 256)) for s in series])
elif variant == "series512":
    x = np.stack([znorm(resample(s, 512)) for s in series])
elif variant == "pad1344":
    x = np.stack([np.pad(znorm(s), (0, 1344 - len(s))) for s in series])
elif variant == "log256":
    x = np.stack([resample(s, 256) for s in series]); x = np.sign(x) * np.log1p(np.abs(x) * 1e4); x = (x - x.mean()) / x.std()
x = x[..., None].astype("float32")
xt, xv, yt, yv = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
keras.utils.set_random_seed(0)
model = networks.build(net, x.shape[1:], 11)
model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
t = time.time()
h = model.fit(xt, yt, batch_size=16, epochs=epochs, validation_data=(xv, yv), verbose=0)
va = h.history["val_accuracy"]
print(f"{variant} {net} epochs={epochs} val_acc last={va[-1]:.3f} best={max(va):.3f} mean_last5={np.mean(va[-5:]):.3f} train_acc={h.history['accuracy'][-1]:.3f} {time.time()-t:.0f}s", flush=True)
