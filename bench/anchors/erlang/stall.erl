%% The dist_stall anchor: what Erlang/OTP does when a peer it streams to freezes (SIGSTOP).
%% a@localhost streams ~100-byte {seq, <<100 bytes>>} to {sink, b@localhost}; after 2 s of flow
%% b is stopped for 10 s. Prints, as nodus-bench does:
%%   RESULT name=dist_stall_rss_mb   (a's RSS rise over the stop, MB)
%%   RESULT name=dist_stall_resume   (messages sent in the second after SIGCONT)
%% Both nodes keep the default net_ticktime (60 s) and dist_buf_busy_limit (1 MB).
-module(stall).
-export([a_main/0, b_main/0]).

b_main() ->
    register(sink, spawn(fun sink/0)),
    receive stop -> halt() after 120000 -> halt() end.

sink() ->
    receive
        {os_pid, From} -> From ! {os_pid, os:getpid()}, sink();
        stop -> halt();
        _ -> sink()
    end.

a_main() ->
    B = 'b@localhost',
    wait_pong(B, 200),
    {sink, B} ! {os_pid, self()},
    OsPid = receive {os_pid, P} -> P after 10000 -> halt(1) end,
    Count = counters:new(1, [atomics]),
    Bin = binary:copy(<<"x">>, 100),
    Sender = spawn(fun() -> stream(B, Bin, Count) end),
    timer:sleep(2000),
    Rss0 = rss(),
    Before = counters:get(Count, 1),
    os:cmd("kill -STOP " ++ OsPid),
    Max = sample(Rss0, erlang:monotonic_time(millisecond) + 10000),
    AtCont = counters:get(Count, 1),
    os:cmd("kill -CONT " ++ OsPid),
    timer:sleep(1000),
    Resumed = counters:get(Count, 1) - AtCont,
    exit(Sender, kill),
    io:format(standard_error, "detail: dist_stall (Erlang): ~p msgs in the 2 s before the stop; ~p sent during the 10 s stop; RSS ~.1f MB before, ~.1f MB at most during~n",
              [Before, AtCont - Before, Rss0 / 1048576, Max / 1048576]),
    io:format("RESULT name=dist_stall_rss_mb value=~.3f unit=MB~n", [(Max - Rss0) / 1048576]),
    io:format("RESULT name=dist_stall_resume value=~p unit=msgs/s~n", [Resumed]),
    {sink, B} ! stop,
    timer:sleep(100),
    halt().

wait_pong(_, 0) -> halt(1);
wait_pong(B, N) ->
    case net_adm:ping(B) of
        pong -> ok;
        pang -> timer:sleep(50), wait_pong(B, N - 1)
    end.

stream(B, Bin, Count) ->
    [{sink, B} ! {seq, Bin} || _ <- lists:seq(1, 50)],
    counters:add(Count, 1, 50),
    stream(B, Bin, Count).

sample(Max, End) ->
    case erlang:monotonic_time(millisecond) >= End of
        true -> Max;
        false -> timer:sleep(50), sample(max(Max, rss()), End)
    end.

rss() ->
    {ok, S} = file:read_file("/proc/self/statm"),
    [_, R | _] = string:split(binary_to_list(S), " ", all),
    list_to_integer(string:trim(R)) * 4096.
