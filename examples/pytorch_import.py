# chainrule -> PyTorch: load mlp_chainrule.npz (written by examples/from_pytorch.c).
import numpy as np
import torch

model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
names = {"dense0": "0", "dense1": "2"}
state = {}
with np.load("mlp_chainrule.npz") as z:
    for name in z.files:
        layer, kind = name.split(".")
        a = z[name]
        state[names[layer] + "." + kind] = torch.from_numpy(a.T.copy() if a.ndim == 2 else a)
model.load_state_dict(state)                      # strict: every name and shape must match

probe = np.load("probe.npy")
pred = model(torch.from_numpy(probe)).detach().numpy()
chainrule_pred = np.load("chainrule_pred.npy")
print("largest difference from chainrule:", np.abs(pred - chainrule_pred).max())
assert np.allclose(pred, chainrule_pred, rtol=0, atol=1e-6)
