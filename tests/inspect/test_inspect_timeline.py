"""`--timeline`: one column per actor that appears, one row per step, `|` while an
actor is blocked, `!!` for violations."""

from __future__ import annotations


def table(out: str) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Parse the timeline back: column names, and step -> actor -> cell text (a row's
    continuation lines joined with '; ')."""
    lines = out.splitlines()
    header, rule = lines[0], lines[1]
    spans = []
    pos = 0
    for dashes in rule.split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    names = [header[a:b].strip() for a, b in spans]
    rows: dict[int, dict[str, str]] = {}
    step = None
    for line in lines[2:]:
        if line.startswith("run.end"):
            break
        first = line[spans[0][0]:spans[0][1]].strip()
        if first:
            step = int(first)
            rows[step] = {}
        assert step is not None
        for name, (a, b) in zip(names[1:], spans[1:]):
            cell = line[a:b].strip() if name != "notes" else line[a:].strip()
            if cell:
                old = rows[step].get(name)
                rows[step][name] = cell if old is None or old == cell else f"{old}; {cell}"
    return names, rows


def test_columns_are_the_actors_that_appear_in_order(inspect, munmap_log, mapfixed_log):
    names, _ = table(inspect.ok(munmap_log, "--timeline"))
    assert names == ["step", "cpu0", "cpu1", "cpu2", "tree", "shootdown", "mmap_sem", "notes"]
    names, _ = table(inspect.ok(mapfixed_log, "--timeline"))
    assert names == ["step", "cpu0", "cpu1", "cpu2", "tree", "shootdown", "rcu", "notes"]


def test_one_row_per_step_with_labels(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--timeline")
    _, rows = table(out)
    assert sorted(rows) == list(range(1, 16))
    assert rows[1]["cpu2"] == "munmap A; down_write>mmap_sem"
    assert rows[2]["mmap_sem"] == "<down_write; grant>cpu2"
    assert rows[4]["tree"] == "<store; tree=NULL; stored>cpu2"
    assert rows[6]["cpu2"] == "<stored; zap f3 f4; flush(local); flush>shootdown"
    assert rows[7]["cpu0"] == "ld r0=1"
    assert rows[9]["cpu0"] == "<ipi; flush(ipi); ack>shootdown"
    assert out.splitlines()[-2:] == [
        "run.end at step 16: violation (coherence)",
        "(| blocked on a lock or waiting for a reply; !! invariant violated; <kind received, kind>sent to)",
    ]


def test_blocked_actors_show_a_bar(inspect, munmap_log):
    _, rows = table(inspect.ok(munmap_log, "--timeline"))
    # cpu2 waits for the grant (2), the tree (4, 5) and the shootdown (7..12).
    bars = sorted(s for s, cells in rows.items() if cells.get("cpu2") == "|")
    assert bars == [2, 4, 5, 7, 8, 9, 10, 11, 12]
    # The shootdown coordinator waits for the acks after sending its IPIs.
    assert [s for s, cells in rows.items() if cells.get("shootdown") == "|"] == [9, 10]
    # cpu0 and cpu1 never wait.
    assert not any(cells.get(c) == "|" for cells in rows.values() for c in ("cpu0", "cpu1"))


def test_lock_waits_are_blocked(inspect, tmp_path, logs):
    b = logs.LogBuilder()
    b.step()
    b.add("cpu0", "lock.acquire", cpu=0, lock="mmap_sem", mode="write")
    b.step()
    b.add("cpu1", "lock.wait", cpu=1, lock="mmap_sem", mode="read")
    for _ in range(2):
        b.step()
        b.add("cpu0", "mem.store", cpu=0, addr=logs.A, pages=1, frame=1, vma="A", vaddr=logs.A, value=1)
    b.step()
    b.add("cpu0", "lock.release", cpu=0, lock="mmap_sem", mode="write")
    b.step()
    b.add("cpu1", "lock.acquire", cpu=1, lock="mmap_sem", mode="read")
    b.step()
    b.add("cpu2", "lock.wait", cpu=2, lock="vma", vma="A", mode="write")
    b.step()
    b.add("cpu0", "mem.store", cpu=0, addr=logs.A, pages=1, frame=1, vma="A", vaddr=logs.A, value=2)
    b.end("deadlock", {}, ["deadlock"])
    out = inspect.ok(b.write(tmp_path / "locks.jsonl"), "--timeline")
    _, rows = table(out)
    assert rows[2]["cpu1"] == "wait mmap_sem(r)"
    assert rows[3]["cpu1"] == rows[4]["cpu1"] == rows[5]["cpu1"] == "|"
    assert rows[6]["cpu1"] == "lock mmap_sem(r)"
    assert rows[7]["cpu2"] == "wait vma A(w)"
    assert rows[8]["cpu2"] == "|"  # still waiting when the run ends
    assert out.splitlines()[-2] == "run.end at step 9: deadlock (deadlock)"


def test_violations_are_marked(inspect, munmap_log):
    _, rows = table(inspect.ok(munmap_log, "--timeline"))
    notes = {s: cells["notes"] for s, cells in rows.items() if "notes" in cells}
    assert notes == {7: "!! coherence: cpu0's TLB maps frame 4, the page table nothing"}


def test_filters_choose_rows_and_columns(inspect, munmap_log):
    names, rows = table(inspect.ok(munmap_log, "--timeline", "--cpu", "0"))
    # cpu0's own events, and the shootdown's IPI to it (ipi.send names cpu 0)
    assert names == ["step", "cpu0", "shootdown", "notes"]
    # and steps 10, 11, where the shootdown still waits for the acks
    assert sorted(rows) == [7, 8, 9, 10, 11]
    assert rows[10] == rows[11] == {"shootdown": "|"}
    _, rows = table(inspect.ok(munmap_log, "--timeline", "--actor", "cpu2", "--from-step", "6"))
    assert [s for s, c in rows.items() if c == {"cpu2": "|"}] == [7, 8, 9, 10, 11, 12]
    names, rows = table(inspect.ok(munmap_log, "--timeline", "--from-step", "9", "--to-step", "10"))
    assert names == ["step", "cpu0", "cpu1", "cpu2", "shootdown"]
    assert rows[9]["cpu2"] == rows[10]["cpu2"] == "|"  # blocked, from events outside the window


def test_columns_have_fixed_width(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--timeline")
    lines = out.splitlines()
    rule = lines[1]
    starts = [i for i in range(len(rule)) if rule[i] == "-" and (i == 0 or rule[i - 1] == " ")]
    for line in lines[2:-2]:
        for s in starts[1:]:
            # every cell starts at its column or the column is empty there
            assert line[s - 2:s] in ("  ", "") or len(line) <= s - 2, line
    assert out.isascii()


def test_empty_selection(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--timeline", "--event", "rcu.*")
    assert "(no event matches)" in out


def rwsem_story(logs):
    """cpu1 holds mmap_sem for write; cpu0 faults, queues for read (the rwsem actor logs
    the wait for it), takes an IPI while queued, and is let in by cpu1's up_write: the
    grant is caused by the up_write, yet it answers cpu0's down_read."""
    b = logs.LogBuilder()
    b.step()  # 1
    w = b.send("cpu1", "mmap_sem", "down_write")
    b.step()  # 2
    b.recv(w)
    b.add("mmap_sem", "lock.acquire", cpu=1, lock="mmap_sem", mode="write")
    g1 = b.send("mmap_sem", "cpu1", "grant", cause=w)
    b.step()  # 3
    b.add("cpu0", "op.begin", cpu=0, thread=0, index=0, text="r0 = load A")
    b.add("cpu0", "fault.begin", cpu=0, addr=logs.A, pages=1, vaddr=logs.A, access="load")
    r = b.send("cpu0", "mmap_sem", "down_read")
    b.step()  # 4
    b.recv(r)
    b.add("mmap_sem", "lock.wait", cpu=0, lock="mmap_sem", mode="read")
    b.step()  # 5
    b.recv(g1)
    f = b.send("cpu1", "shootdown", "flush", cause=g1)
    b.step()  # 6
    b.recv(f)
    ipi = b.send("shootdown", "cpu0", "ipi", cause=f)
    b.step()  # 7
    b.recv(ipi)
    b.add("cpu0", "tlb.flush", cpu=0, addr=logs.A, pages=1, reason="ipi")
    ack = b.send("cpu0", "shootdown", "ack", cause=ipi)
    b.step()  # 8
    b.recv(ack)
    done = b.send("shootdown", "cpu1", "flush_done", cause=ack)
    b.step()  # 9
    b.recv(done)
    up = b.send("cpu1", "mmap_sem", "up_write", cause=done)
    b.add("cpu1", "op.end", cpu=1, thread=1, index=0, text="munmap A", result=0)
    b.step()  # 10
    b.recv(up)
    b.add("mmap_sem", "lock.release", cpu=1, lock="mmap_sem", mode="write")
    b.add("mmap_sem", "lock.acquire", cpu=0, lock="mmap_sem", mode="read")
    g2 = b.send("mmap_sem", "cpu0", "grant", cause=up)
    b.step()  # 11
    b.add("cpu1", "mem.load", cpu=1, addr=logs.A, pages=1, frame=1, vma="A", vaddr=logs.A, reg="r1", value=1)
    b.step()  # 12
    b.recv(g2)
    b.add("cpu0", "fault.segv", cpu=0, addr=logs.A, pages=1, reason="no vma")
    b.end("ok", {"0:r0": "segv"}, [])
    return b


def test_waits_logged_by_the_rwsem_block_the_waiting_cpu(inspect, tmp_path, logs):
    out = inspect.ok(rwsem_story(logs).write(tmp_path / "rwsem.jsonl"), "--timeline")
    names, rows = table(out)
    assert names == ["step", "cpu0", "cpu1", "shootdown", "mmap_sem"]
    assert rows[4]["mmap_sem"] == "<down_read; cpu0 waits mmap_sem(r)"
    # cpu0 waits from its down_read (3) to the grant (12), taking the IPI at 7 meanwhile
    assert [s for s, c in rows.items() if c.get("cpu0") == "|"] == [4, 5, 6, 8, 9, 10, 11]
    assert rows[7]["cpu0"] == "<ipi; flush(ipi); ack>shootdown"
    # cpu1 waits for its grant and its flush, not after its op ended; acking the IPI
    # does not make cpu0 wait for what the shootdown's completion set off
    assert [s for s, c in rows.items() if c.get("cpu1") == "|"] == [2, 3, 4, 6, 7, 8]
    # the rwsem never waits; the shootdown waits for the ack
    assert not any(c.get("mmap_sem") == "|" for c in rows.values())
    assert [s for s, c in rows.items() if c.get("shootdown") == "|"] == [7]


def test_rwsem_story_as_a_race_chart(inspect, tmp_path, logs):
    out = inspect.ok(rwsem_story(logs).write(tmp_path / "rwsem.jsonl"), "--diagram", "ascii")
    assert out.splitlines()[:-2] == [
        "CPU 0                            CPU 1",
        "-----                            -----",
        "                                 down_write(mmap_sem)",
        "do_page_fault(0x7effffffe000)",
        "  down_read(mmap_sem)",
        "  ... waits",
        "                                 ...mmap_sem: grant",
        "<IPI> flush_tlb",
        "                                 ...shootdown: flush_done",
        "                                 up_write(mmap_sem)",
        "                                 load 0x7effffffe000 = 1",
        "  ...mmap_sem: grant",
        "  SIGSEGV (no vma)",
    ]
