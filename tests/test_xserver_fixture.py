from tests.xserver import xserver


def test_xserver_starts_window_and_title_change() -> None:
    with xserver() as x:
        proc = x.tk_window("fixture-alpha")
        x.activate("fixture-alpha")
        assert proc.stdin is not None
        proc.stdin.write(b"fixture-beta\n")
        proc.stdin.flush()
        from tests.xserver import wait_for

        wait_for(lambda: x.window_ids("fixture-beta"), 5, "title change")
