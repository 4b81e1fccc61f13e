"""scripts/ncu_stalls.py reads Nsight Compute's source page (CSV) and sums stall samples; runs anywhere."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import ncu_stalls  # noqa: E402

HEADER = ['"Address"', '"Source"', '"Warp Stall Sampling (All Samples)"', '"Instructions Executed"',
          '"stall_barrier"', '"stall_short_sb"', '"stall_short_sb (Not Issued)"']


def test_stalls_by_reason_window_and_instruction(tmp_path):
    rows = [('"0x0"', '"      LDS.64 R18, [R96]"', 5, 100, 1, 4, 9),
            ('"0x10"', '"      IMAD.IADD R1, R1, 0x1, R18"', 40, 100, 2, 38, 9),
            ('"0x20"', '"      BAR.SYNC.DEFER_BLOCKING R17, 0x80"', 12, 50, 12, 0, 0)]
    text = '"Kernel Name","void k()"\n' + ",".join(HEADER) + "\n" + "\n".join(
        ",".join(str(v) if not isinstance(v, str) else v for v in r) for r in rows) + "\n"
    path = tmp_path / "source.csv"
    path.write_text(text)
    instrs = ncu_stalls.read_source_page(str(path))
    assert [i["samples"] for i in instrs] == [5, 40, 12]
    assert instrs[1]["stalls"] == {"barrier": 2, "short_sb": 38}          # "Not Issued" columns left out
    report = ncu_stalls.summarize(instrs, top=1, window=2)
    assert "57 stall samples" in report
    assert "short_sb                42" in report and "barrier                 15" in report
    assert "45 (78.9%)" in report                                         # instructions 0-1 of window 0
    assert "IMAD.IADD R1, R1, 0x1, R18" in report.split("top 1 instructions:")[1]
