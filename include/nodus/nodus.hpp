// nodus: Erlang/OTP-style processes and distribution for C++20. The umbrella header.
#pragma once

#include "nodus/atom.hpp"
#include "nodus/io.hpp"
#include "nodus/log.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/node.hpp"
#include "nodus/message.hpp"
#include "nodus/pid.hpp"
#include "nodus/proc.hpp"
#include "nodus/process.hpp"
#include "nodus/receive.hpp"
#include "nodus/runtime.hpp"
#include "nodus/system_messages.hpp"
#include "nodus/term.hpp"
#include "nodus/term_parser.hpp"
#include "nodus/type_name.hpp"
#include "nodus/wire_type.hpp"
