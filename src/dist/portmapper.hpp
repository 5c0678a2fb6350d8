// The port mapper's API is public: nodus/portmapper.hpp.
#pragma once

#include "nodus/portmapper.hpp"
