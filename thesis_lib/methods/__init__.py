"""The thesis's algorithms, usable on their own in any PyTorch loop over a thesis ResNet.

`prunetrain` (section 2.4), `net2net` (2.5), `morphnet` (2.7) and `batchsize` (2.9, 6.1). They import the
core (`models`, `surgery`, `training`, `data`, `stats`) and nothing above it: no profiles, no run cache, no
chapter plans.
"""
