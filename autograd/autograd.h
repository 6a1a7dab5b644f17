#pragma once
// Umbrella header of the autograd layer.
#include "autograd/checkpoint.h"
#include "autograd/function.h"
#include "autograd/functions/basic.h"
#include "autograd/functions/fused.h"
#include "autograd/functions/indexing.h"
#include "autograd/functions/reduce.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
