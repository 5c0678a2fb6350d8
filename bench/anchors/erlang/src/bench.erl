%% Erlang/OTP distribution anchor benchmarks.
%% Node B runs b_main/0 (registered services); node A runs a_main/1 with a scenario.
%% local_main/1 runs the single-node scenarios. Every wait has a timeout.
-module(bench).
-export([b_main/0, a_main/1, local_main/1, reply/1, c_main/0, cluster_main/1, mesh/1, blast/2]).

-define(B, 'b@localhost').
-define(WAIT, 120000).

%% ---------------------------------------------------------------- node B
b_main() ->
    register(bench_b_ctl, self()),
    register(bench_sink, spawn_link(fun sink/0)),
    register(bench_echo, spawn_link(fun echo/0)),
    register(bench_count, spawn_link(fun count/0)),
    register(bench_drop, spawn_link(fun drop/0)),
    receive
        stop -> ok
    after 150000 -> io:format("b: lifetime bound hit, halting~n")
    end,
    halt(0).

%% sink: {start, From, N} then N messages {seq, I, Bin}; replies {done, N, OutOfOrder}
sink() ->
    receive
        {start, From, N} -> sink_count(From, N, 0, 0), sink()
    after ?WAIT * 2 -> ok
    end.

sink_count(From, N, N, Bad) -> From ! {done, N, Bad};
sink_count(From, N, C, Bad) ->
    receive
        {seq, I, _Bin} ->
            Bad1 = case I =:= C + 1 of true -> Bad; false -> Bad + 1 end,
            sink_count(From, N, C + 1, Bad1)
    after ?WAIT -> io:format("b: sink timeout at ~p/~p~n", [C, N])
    end.

echo() ->
    receive
        {ping, From, I} -> From ! {pong, I}, echo();
        stop -> ok
    after ?WAIT * 2 -> ok
    end.

%% count: {start, From, N} then N messages {seq2, K, I, Bin} from any number of senders, each
%% sender K's I counting 1, 2, ... in its own order; replies {done, N, OutOfOrder}
count() ->
    receive
        {start, From, N} -> count_loop(From, N, 0, 0, #{}), count()
    after ?WAIT * 2 -> ok
    end.

count_loop(From, N, N, Bad, _Last) -> From ! {done, N, Bad};
count_loop(From, N, C, Bad, Last) ->
    receive
        {seq2, K, I, _Bin} ->
            Bad1 = case I =:= maps:get(K, Last, 0) + 1 of true -> Bad; false -> Bad + 1 end,
            count_loop(From, N, C + 1, Bad1, Last#{K => I})
    after ?WAIT -> io:format("b: count timeout at ~p/~p~n", [C, N])
    end.

%% drop: takes anything, keeps nothing (the large messages of dist_mixed)
drop() ->
    receive
        stop -> ok;
        _ -> drop()
    after ?WAIT * 2 -> ok
    end.

%% reply: a remotely spawned process's first act: tells its spawner it runs
reply(From) -> From ! {hi, self()}.

%% ---------------------------------------------------------------- node A
a_main([Scenario | Args]) ->
    try
        ok = wait_for_b(100),
        run(list_to_atom(Scenario), [list_to_integer(A) || A <- Args])
    catch C:E:St ->
        io:format("ERROR ~p:~p ~p~n", [C, E, St])
    after
        {bench_b_ctl, ?B} ! stop
    end,
    timer:sleep(50),
    halt(0).

wait_for_b(0) -> {error, b_not_up};
wait_for_b(Tries) ->
    case net_adm:ping(?B) of
        pong ->
            case rpc:call(?B, erlang, whereis, [bench_echo]) of
                P when is_pid(P) -> ok;
                _ -> timer:sleep(100), wait_for_b(Tries - 1)
            end;
        pang -> timer:sleep(100), wait_for_b(Tries - 1)
    end.

run(dist_oneway_small, [N]) -> oneway(dist_oneway_small, N, 16);
run(dist_oneway_1k, [N]) -> oneway(dist_oneway_1k, N, 1024);
run(dist_pingpong, [N]) -> pingpong(N);
run(dist_size, [Scale]) -> sizes(Scale);
run(dist_senders, [N]) -> senders(N);
run(dist_spawn, [N]) -> spawns(N);
run(dist_mixed, [N]) -> mixed(N).

%% one-way throughput at each message size (binaries of 16 B .. 16 MiB); Scale: percent of the
%% default counts
sizes(Scale) ->
    lists:foreach(fun({Label, Size, N0}) ->
                      N = max(10, N0 * Scale div 100),
                      Bin = binary:copy(<<"x">>, Size),
                      Dest = {bench_sink, ?B},
                      {_, 0} = oneway_once(Dest, max(2, N div 20), Bin),
                      {Us, Bad} = oneway_once(Dest, N, Bin),
                      io:format("detail: dist_size_~s ~p msgs of ~p bytes in ~.3f s, out_of_order=~p~n",
                                [Label, N, Size, Us / 1.0e6, Bad]),
                      result("dist_size_" ++ Label, N / (Us / 1.0e6), "msgs/s")
                  end, size_table()).

size_table() ->
    [{"16B", 16, 1000000}, {"256B", 256, 600000}, {"4KiB", 4096, 200000},
     {"64KiB", 65536, 20000}, {"1MiB", 1048576, 1000}, {"16MiB", 16777216, 60}].

%% remote one-way throughput from 1, 64 and 10,000 sender processes, N messages in all
senders(N) ->
    lists:foreach(fun(K) ->
                      Each = N div K,
                      Total = Each * K,
                      Bin = binary:copy(<<"x">>, 16),
                      Dest = {bench_count, ?B},
                      T0 = erlang:monotonic_time(microsecond),
                      Dest ! {start, self(), Total},
                      [spawn(fun() -> send2(Dest, Id, 1, Each, Bin) end) || Id <- lists:seq(1, K)],
                      Bad = receive {done, Total, B} -> B after ?WAIT -> error(no_ack) end,
                      Us = erlang:monotonic_time(microsecond) - T0,
                      io:format("detail: dist_senders_~p ~p senders x ~p msgs in ~.3f s, out_of_order=~p~n",
                                [K, K, Each, Us / 1.0e6, Bad]),
                      result("dist_senders_" ++ integer_to_list(K), Total / (Us / 1.0e6), "msgs/s")
                  end, [1, 64, 10000]).

send2(_Dest, _K, I, N, _Bin) when I > N -> ok;
send2(Dest, K, I, N, Bin) ->
    Dest ! {seq2, K, I, Bin},
    send2(Dest, K, I + 1, N, Bin).

%% spawn(B, bench, reply, [self()]) and its first message back, in a row (N) and from 64
%% concurrent spawners (N in all)
spawns(N) ->
    _ = spawn_loop(200),  % warm-up
    T0 = erlang:monotonic_time(microsecond),
    ok = spawn_loop(N),
    Us = erlang:monotonic_time(microsecond) - T0,
    result(dist_spawn, N / (Us / 1.0e6), "spawns/s"),
    Self = self(),
    Each = max(1, N div 64),
    T1 = erlang:monotonic_time(microsecond),
    [spawn(fun() -> ok = spawn_loop(Each), Self ! spawned end) || _ <- lists:seq(1, 64)],
    [receive spawned -> ok after ?WAIT -> error(spawn_timeout) end || _ <- lists:seq(1, 64)],
    Us1 = erlang:monotonic_time(microsecond) - T1,
    io:format("detail: dist_spawn ~p in a row in ~.3f s; 64 x ~p concurrent in ~.3f s~n",
              [N, Us / 1.0e6, Each, Us1 / 1.0e6]),
    result(dist_spawn_c64, 64 * Each / (Us1 / 1.0e6), "spawns/s").

spawn_loop(0) -> ok;
spawn_loop(N) ->
    P = spawn(?B, bench, reply, [self()]),
    receive {hi, P} -> spawn_loop(N - 1) after 10000 -> error(spawn_reply_timeout) end.

%% small round trips (N) while another process streams 16 MiB binaries to the same node
mixed(N) ->
    Big = binary:copy(<<"x">>, 16777216),
    Self = self(),
    Streamer = spawn(fun() -> stream({bench_drop, ?B}, Big, Self, 0) end),
    _ = pp_loop({bench_echo, ?B}, 1, 200, []),  % warm-up, the stream already going
    Ds = pp_loop({bench_echo, ?B}, 1, N, []),
    Streamer ! stop,
    Sent = receive {streamed, C} -> C after ?WAIT -> error(stream_timeout) end,
    {_, _, P} = rtts(Ds),
    io:format("detail: dist_mixed ~p round trips beside ~p x 16 MiB; p50=~.1f p99=~.1f us~n",
              [N, Sent, P(0.5), P(0.99)]),
    result(dist_mixed_p50, P(0.5), "us"),
    result(dist_mixed_p99, P(0.99), "us").

stream(Dest, Big, Parent, C) ->
    receive
        stop -> Parent ! {streamed, C}
    after 0 ->
        Dest ! {big, Big},
        stream(Dest, Big, Parent, C + 1)
    end.

oneway(Name, N, Size) ->
    Bin = binary:copy(<<"x">>, Size),
    Dest = {bench_sink, ?B},
    %% warm-up (not timed)
    {_, 0} = oneway_once(Dest, 20000, Bin),
    {Us, Bad} = oneway_once(Dest, N, Bin),
    Rate = N / (Us / 1.0e6),
    io:format("detail: ~p msgs of {seq, Int, <<~p bytes>>} A->{bench_sink,b@localhost}; "
              "elapsed ~.3f s (first send -> final ack); out_of_order=~p~n",
              [N, Size, Us / 1.0e6, Bad]),
    io:format("detail: payload throughput ~.1f MB/s (binary bytes only)~n", [Rate * Size / 1.0e6]),
    result(Name, Rate, "msgs/s").

oneway_once(Dest, N, Bin) ->
    T0 = erlang:monotonic_time(microsecond),
    Dest ! {start, self(), N},
    send_loop(Dest, 1, N, Bin),
    receive
        {done, N, Bad} -> {erlang:monotonic_time(microsecond) - T0, Bad}
    after ?WAIT -> error(no_ack)
    end.

send_loop(_Dest, I, N, _Bin) when I > N -> ok;
send_loop(Dest, I, N, Bin) ->
    Dest ! {seq, I, Bin},
    send_loop(Dest, I + 1, N, Bin).

pingpong(N) ->
    Dest = {bench_echo, ?B},
    _ = pp_loop(Dest, 1, 2000, []),               % warm-up (not timed)
    T0 = erlang:monotonic_time(),
    Ds = pp_loop(Dest, 1, N, []),
    Total = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond),
    {S, US, P} = rtts(Ds),
    Mean = US(lists:sum(Ds)) / N,
    io:format("detail: ~p sequential round trips {ping, Pid, Int} -> {pong, Int} A<->b@localhost, total ~.3f s~n",
              [N, Total / 1.0e6]),
    io:format("detail: rtt_us min=~.1f p50=~.1f mean=~.1f p90=~.1f p99=~.1f max=~.1f~n",
              [US(element(1, S)), P(0.5), Mean, P(0.9), P(0.99), US(element(N, S))]),
    result(dist_pingpong_p50, P(0.5), "us"),
    result(dist_pingpong_p99, P(0.99), "us"),
    result(dist_pingpong, N / (Total / 1.0e6), "roundtrips/s").

%% round-trip times (native units): sorted as a tuple, a native -> us fun, a percentile fun in us
rtts(Ds) ->
    N = length(Ds),
    S = list_to_tuple(lists:sort(Ds)),
    US = fun(D) -> erlang:convert_time_unit(D, native, nanosecond) / 1000 end,
    {S, US, fun(Q) -> US(element(max(1, min(N, round(Q * N))), S)) end}.

pp_loop(_Dest, I, N, Acc) when I > N -> Acc;
pp_loop(Dest, I, N, Acc) ->
    T0 = erlang:monotonic_time(),
    Dest ! {ping, self(), I},
    receive
        {pong, I} -> pp_loop(Dest, I + 1, N, [erlang:monotonic_time() - T0 | Acc])
    after 10000 -> error({pong_timeout, I})
    end.

%% ---------------------------------------------------------------- cluster
%% dist_cluster: N nodes c1..cN (c_main) and a coordinator (cluster_main [N, LaunchMs]), as
%% nodus-bench's dist_cluster: startup (launch -> each answers a ping), mesh (every node pings
%% every other), RSS per node, all-to-all throughput (each node sends M to every other).
c_main() ->
    register(bench_c_ctl, self()),
    register(bench_count, spawn_link(fun count/0)),
    receive stop -> ok after 150000 -> ok end,
    halt(0).

mesh(Nodes) -> length([N || N <- Nodes, N =:= node() orelse net_adm:ping(N) =:= pong]).

blast(Nodes, M) ->
    K = length(lists:takewhile(fun(N) -> N =/= node() end, Nodes)) + 1,
    Bin = binary:copy(<<"x">>, 16),
    [spawn(fun() -> send2({bench_count, N}, K, 1, M, Bin) end) || N <- Nodes, N =/= node()],
    ok.

cluster_main([NS, LaunchS]) ->
    N = list_to_integer(NS),
    Nodes = [list_to_atom("c" ++ integer_to_list(I) ++ "@localhost") || I <- lists:seq(1, N)],
    try
        [ok = wait_up(C, 3000) || C <- Nodes],
        Up = erlang:system_time(millisecond),
        T0 = erlang:monotonic_time(microsecond),
        {Meshed, []} = rpc:multicall(Nodes, bench, mesh, [Nodes], 60000),
        MeshUs = erlang:monotonic_time(microsecond) - T0,
        true = lists:all(fun(R) -> R =:= N end, Meshed),
        Rss = lists:sum([rss_kb(C) || C <- Nodes]) / 1024 / N,
        M = max(1, 2000000 div (N * (N - 1))),
        [{bench_count, C} ! {start, self(), (N - 1) * M} || C <- Nodes],
        T1 = erlang:monotonic_time(microsecond),
        {_, []} = rpc:multicall(Nodes, bench, blast, [Nodes, M], 60000),
        Bad = lists:sum([receive {done, _, B} -> B after ?WAIT -> error(count_timeout) end || _ <- Nodes]),
        AllUs = erlang:monotonic_time(microsecond) - T1,
        Base = "dist_cluster_" ++ NS,
        io:format("detail: ~s startup ~p ms, mesh ~.1f ms, RSS ~.1f MB per node, all-to-all ~p msgs in ~.3f s, out_of_order=~p~n",
                  [Base, Up - list_to_integer(LaunchS), MeshUs / 1000, Rss, N * (N - 1) * M, AllUs / 1.0e6, Bad]),
        result(Base ++ "_startup_ms", Up - list_to_integer(LaunchS), "ms"),
        result(Base ++ "_mesh_ms", MeshUs / 1000, "ms"),
        result(Base ++ "_rss_mb", Rss, "MB"),
        result(Base ++ "_all2all", N * (N - 1) * M / (AllUs / 1.0e6), "msgs/s")
    catch C:E:St ->
        io:format("ERROR ~p:~p ~p~n", [C, E, St])
    after
        [{bench_c_ctl, Cn} ! stop || Cn <- Nodes]
    end,
    timer:sleep(50),
    halt(0).

wait_up(_C, 0) -> {error, not_up};
wait_up(C, Tries) ->
    case net_adm:ping(C) of
        pong ->
            case rpc:call(C, erlang, whereis, [bench_count]) of
                P when is_pid(P) -> ok;
                _ -> timer:sleep(10), wait_up(C, Tries - 1)
            end;
        pang -> timer:sleep(10), wait_up(C, Tries - 1)
    end.

rss_kb(C) ->
    {ok, Status} = rpc:call(C, file, read_file, ["/proc/self/status"]),
    [Line] = [L || L <- binary:split(Status, <<"\n">>, [global]), binary:match(L, <<"VmRSS:">>) =/= nomatch],
    [_, Kb | _] = string:lexemes(binary_to_list(Line), " \t"),
    list_to_integer(Kb).

%% ---------------------------------------------------------------- local
local_main([Scenario | Args]) ->
    try
        local(list_to_atom(Scenario), [list_to_integer(A) || A <- Args])
    catch C:E:St ->
        io:format("ERROR ~p:~p ~p~n", [C, E, St])
    end,
    halt(0).

local(local_send, [N]) ->
    Bin = binary:copy(<<"x">>, 16),
    Self = self(),
    _ = local_send_once(Self, 100000, Bin),       % warm-up (not timed)
    {Us, SendUs, MaxQ} = local_send_once(Self, N, Bin),
    io:format("detail: ~p msgs {seq, Int, <<16 bytes>>} producer->consumer on one node; "
              "elapsed ~.3f s (first send -> consumer ack); producer done sending after ~.3f s; "
              "consumer max queue seen ~p~n", [N, Us / 1.0e6, SendUs / 1.0e6, MaxQ]),
    result(local_send, N / (Us / 1.0e6), "msgs/s");
local(local_spawn, [N]) ->
    Parent = self(),
    Ref = make_ref(),
    %% spawn from a fresh process so the measuring process' own heap does not matter
    erlang:garbage_collect(),
    M0 = erlang:memory(processes),
    P0 = erlang:system_info(process_count),
    Spawner = spawn(fun() ->
                  T0 = erlang:monotonic_time(microsecond),
                  spawn_n(N),
                  T1 = erlang:monotonic_time(microsecond),
                  Parent ! {Ref, T1 - T0}
              end),
    SpawnUs = receive {Ref, D} -> D after ?WAIT -> error(spawn_timeout) end,
    %% wait until every new process has run up to its receive (run queues drained)
    T2 = erlang:monotonic_time(microsecond),
    ok = wait_idle(2000),
    ReadyUs = SpawnUs + (erlang:monotonic_time(microsecond) - T2),
    _ = Spawner,
    M1 = erlang:memory(processes),
    P1 = erlang:system_info(process_count),
    PerProc = (M1 - M0) / N,
    io:format("detail: spawned ~p processes each blocked in receive; spawn loop ~.3f s (~.1f spawns/s); "
              "run queues empty (all in receive) at ~.3f s; process_count ~p -> ~p~n",
              [N, SpawnUs / 1.0e6, N / (SpawnUs / 1.0e6), ReadyUs / 1.0e6, P0, P1]),
    io:format("detail: erlang:memory(processes) ~p -> ~p bytes, delta/N = ~.1f bytes/process~n",
              [M0, M1, PerProc]),
    result(local_spawn, SpawnUs / 1.0e6, "s"),
    result(local_spawn_mem, PerProc, "bytes/process").

spawn_n(0) -> ok;
spawn_n(N) ->
    spawn(fun() -> receive stop -> ok end end),
    spawn_n(N - 1).

wait_idle(0) -> {error, not_idle};
wait_idle(Tries) ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ -> timer:sleep(5), wait_idle(Tries - 1)
    end.

local_send_once(Self, N, Bin) ->
    Consumer = spawn_link(fun() -> consume(Self, N, 0, 0) end),
    T0 = erlang:monotonic_time(microsecond),
    lsend(Consumer, 1, N, Bin),
    SendUs = erlang:monotonic_time(microsecond) - T0,
    receive
        {consumed, N, MaxQ} -> {erlang:monotonic_time(microsecond) - T0, SendUs, MaxQ}
    after ?WAIT -> error(consume_timeout)
    end.

lsend(_C, I, N, _Bin) when I > N -> ok;
lsend(C, I, N, Bin) ->
    C ! {seq, I, Bin},
    lsend(C, I + 1, N, Bin).

consume(Parent, N, N, MaxQ) -> Parent ! {consumed, N, MaxQ};
consume(Parent, N, C, MaxQ) ->
    receive
        {seq, _I, _Bin} ->
            MaxQ1 = case C band 16#FFFF of
                        0 -> {message_queue_len, L} = process_info(self(), message_queue_len), max(L, MaxQ);
                        _ -> MaxQ
                    end,
            consume(Parent, N, C + 1, MaxQ1)
    after ?WAIT -> exit(consume_timeout)
    end.

result(Name, Value, Unit) ->
    io:format("RESULT name=~s value=~s unit=~s~n", [Name, fmt(Value), Unit]).

fmt(V) when is_integer(V) -> integer_to_list(V);
fmt(V) when V >= 1000 -> integer_to_list(round(V));
fmt(V) -> float_to_list(V, [{decimals, 2}]).
