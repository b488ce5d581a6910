"""``python -m bench``: the comparison bench; ``python -m bench flash-sale``: the flash-sale
simulation; ``python -m bench report``: redraw plots and docs from the last results.

The single-purpose benches run as modules of their own: ``python -m bench.engine``,
``bench.locations``, ``bench.carts``, ``bench.memory``, ``bench.embedding``, ``bench.durable``,
``bench.startup``, ``bench.http``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["flash-sale"]:
        import bench.flash_sale as flash_sale

        return flash_sale.main(argv[1:])
    if argv[:1] == ["report"]:
        import bench.report as report

        return report.main(argv[1:])
    import bench.compare as compare

    return compare.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
