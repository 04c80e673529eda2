"""thesis_lib: the runnable companion to the thesis "Zeit-effizientes Training von Convolutional Neural Networks".

Modules: models (thesis ResNet from a width spec), surgery (every shape change), prunetrain, net2net,
morphnet, batchsize, data, training, experiments (cached runs and profiles), stats, plots.
"""

__version__ = "0.1.0"
