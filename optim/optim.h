#pragma once
// Umbrella header of the optim layer: AdamW, Muon, the hybrid router, the schedule and clipping (SPEC §7.3–§7.7).
#include "optim/adamw.h"
#include "optim/hybrid.h"
#include "optim/muon.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
