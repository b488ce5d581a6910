"""The engine process's key table as fronts see it (stockade/engine_process/admin.py): a
version that changes exactly when the keys do, and a copy never older than ``max_age_s``."""

from __future__ import annotations

import trio

from stockade.engine_process.admin import ServedKeys
from stockade.persistence.keys import MemoryKeys, make_key


async def test_a_front_gets_the_keys_only_when_they_changed(autojump_clock):
    table = MemoryKeys()
    served = ServedKeys(table, max_age_s=0.5)
    first = await served.state(0)
    assert first.keys == [] and first.version != 0
    assert (await served.state(first.version)).keys is None  # nothing new: just the version
    record, _ = make_key("service", "shop", 1.0)
    await served.add(record)  # through a front: seen at once
    made = await served.state(first.version)
    assert made.version != first.version and made.keys == [record]
    revoked = await served.revoke(record.id, 2.0)
    assert revoked is not None and revoked.revoked_at == 2.0
    after = await served.state(made.version)
    assert after.keys is not None and after.keys[0].revoked_at == 2.0
    assert await served.revoke("0" * 16, 3.0) is None  # unknown: no change, same version
    assert (await served.state(after.version)).keys is None


async def test_a_key_written_by_another_process_is_seen_once_the_copy_is_old(autojump_clock):
    table = MemoryKeys()
    served = ServedKeys(table, max_age_s=0.5)
    version = (await served.state(0)).version
    record, _ = make_key("merchant", "cli", 1.0)
    await table.add(record)  # stockade keys create, straight on the store
    assert (await served.state(version)).keys is None  # the copy is fresh: not re-read yet
    await trio.sleep(0.5)
    seen = await served.state(version)
    assert seen.keys == [record] and seen.version != version


def test_two_engine_processes_never_start_at_the_same_version():
    assert ServedKeys(MemoryKeys()).version != ServedKeys(MemoryKeys()).version
