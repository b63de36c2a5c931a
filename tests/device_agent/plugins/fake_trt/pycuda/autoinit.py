"""`import pycuda.autoinit`: init the driver and make a context on device 0, as pycuda does."""

import atexit

from . import driver

driver.init()
device = driver.Device(0)
context = device.make_context()
atexit.register(context.pop)
