# PyTorch -> chainrule: train a small MLP in PyTorch, save it as mlp.npz.
import numpy as np
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
x = torch.rand(256, 2) * 2 - 1
y = torch.sin(3 * x[:, :1]) * x[:, 1:] ** 2          # the function to learn
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for step in range(300):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()

# chainrule's names: Sequential index 0 -> dense0, 2 -> dense1; its weights
# are (in, out), nn.Linear's are (out, in): transpose them (in C order:
# chainrule refuses Fortran-order arrays, which is what a bare a.T saves).
names = {"0": "dense0", "2": "dense1"}
tensors = {}
for key, value in model.state_dict().items():
    layer, kind = key.split(".")
    a = value.detach().numpy()
    tensors[names[layer] + "." + kind] = np.ascontiguousarray(a.T) if a.ndim == 2 else a
np.savez("mlp.npz", **tensors)

# inputs and PyTorch's predictions, for chainrule to compare with
probe = np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2)
np.save("probe.npy", probe)
np.save("torch_pred.npy", model(torch.from_numpy(probe)).detach().numpy())
