#pragma once
#include "tensor/tensor_core.h"
