"""The model zoo: one module per family. Importing this package registers every model."""

from cnncompare.models import (  # noqa: F401
    alexnet,
    densenet,
    googlenet,
    lenet,
    nin,
    resnet,
    vgg,
)
