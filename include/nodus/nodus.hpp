// nodus: Erlang/OTP-style processes and distribution for C++20. The umbrella header.
#pragma once

#include "nodus/atom.hpp"
#include "nodus/io.hpp"
#include "nodus/log.hpp"
#include "nodus/mailbox.hpp"
#include "nodus/node.hpp"
#include "nodus/observe.hpp"
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
#include "nodus/version.hpp"
#include "nodus/wire_type.hpp"
#include "nodus/gen_server.hpp"
#include "nodus/supervisor.hpp"
#include "nodus/task.hpp"
#include "nodus/application.hpp"
#include "nodus/pg.hpp"
#include "nodus/erpc.hpp"
#include "nodus/global.hpp"
#include "nodus/config.hpp"
#include "nodus/error.hpp"
#include "nodus/export.hpp"

NODUS_API_BEGIN

NODUS_API_END
