"""Every bad command line of the inference launchers is refused in one `error:` line that names
the flag, before any model is loaded (no checkpoint exists at the paths given)."""

import pytest

from tests.cli_testing import bad_invocations

NO_RUN = "/nonexistent/run"  # never read: every case fails before the load

# module -> [(argv, the flag or text the one line must name)]
CASES = {
    "launch.reenact": [
        ([], "--checkpoint"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--frames", "0"], "--frames"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--frames", "-5"], "--frames"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--frames=abc"], "--frames"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--out="], "--out"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--out", "x.txt"], "--out"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--steps", "0"], "--steps"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--chunk_size", "0"], "--chunk_size"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--guidance", "2"], "--guidance"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--plan", "zigzag"], "--plan"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--method", "magic"], "--method"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--fps", "0"], "--fps"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--bogus", "1"], "bogus"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "extra"], "unexpected arguments"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0"], "--checkpoint"),
    ],
    "launch.animate": [
        ([], "--checkpoint"),
        (["--checkpoint", NO_RUN, "--driving", "d.mp4", "--batch_size", "0"], "--batch_size"),
        (["--checkpoint", NO_RUN, "--driving", "d.mp4", "--frames", "0"], "--frames"),
        (["--checkpoint", NO_RUN, "--driving", "d.mp4", "--mode", "sideways"], "--mode"),
        (["--checkpoint", NO_RUN, "--driving", "d.mp4", "--out="], "--out"),
        (["--checkpoint", NO_RUN, "--driving", "d.mp4", "--display_size", "0"], "--display_size"),
        (["--checkpoint", NO_RUN, "--driving", "d.mp4"], "--checkpoint"),
    ],
    "launch.edit": [
        ([], "--checkpoint"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--edit", "melt"], "--edit"),
        (["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--edit", "swap"], "--other_source"),
        (
            [
                "--checkpoint",
                NO_RUN,
                "--driving",
                "synthetic:0",
                "--edit",
                "retime",
                "--amount",
                "0",
            ],
            "--amount",
        ),
        (
            [
                "--checkpoint",
                NO_RUN,
                "--driving",
                "synthetic:0",
                "--edit",
                "mouth",
                "--frames",
                "0",
            ],
            "--frames",
        ),
        (
            ["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--edit", "mouth", "--steps", "0"],
            "--steps",
        ),
        (
            ["--checkpoint", NO_RUN, "--driving", "synthetic:0", "--edit", "mouth", "--out="],
            "--out",
        ),
    ],  # fmt: skip
    "launch.generate": [
        ([], "--lmdm"),
        (["--lmdm", NO_RUN, "--frames", "0"], "--frames"),
        (["--lmdm", NO_RUN, "--method", "loop"], "--method"),
        (["--lmdm", NO_RUN, "--batch_size", "0"], "--batch_size"),
        (["--lmdm", NO_RUN, "--chunk_size", "0"], "--chunk_size"),
        (["--lmdm", NO_RUN, "--guidance", "11"], "--guidance"),
        (["--lmdm", NO_RUN, "--compare", "--split", "val"], "--split"),
        (["--lmdm", NO_RUN, "--compare", "--out", "x.mp4"], "--out"),
        (["--lmdm", NO_RUN], "--animator"),
        (["--lmdm", NO_RUN, "--animator", NO_RUN, "--first-frame", "f.png", "--out="], "--out"),
    ],
    "launch.leo_demo": [
        (["--frames", "0"], "--frames"),
        (["--frames", "-3"], "--frames"),
        (["--frames", "20000"], "--frames"),
        (["--sequences", "0"], "--sequences"),
        (["--steps", "-1"], "--steps"),
        (["--fps", "0"], "--fps"),
        (["--guidance", "-1"], "--guidance"),
        (["--display_size", "0"], "--display_size"),
        (["--out="], "--out"),
        (["--animator", NO_RUN, "--out", "r"], "--animator"),
        (["--animator", NO_RUN, "extra"], "unexpected arguments"),
    ],
    "launch.evaluate": [
        ([], "--out"),
        (["--out", "r"], "--checkpoint"),
        (["--out", "r", "--checkpoint", NO_RUN, "--clips", "0"], "--clips"),
        (["--out", "r", "--checkpoint", NO_RUN, "--frames", "0"], "--frames"),
        (["--out", "r", "--checkpoint", NO_RUN, "--steps", "0"], "--steps"),
        (["--out", "r", "--checkpoint", NO_RUN, "--plan", "zigzag"], "--plan"),
        (["--out", "r", "--checkpoint", NO_RUN, "--seeds", "a"], "--seeds"),
        (["--out", "r", "--checkpoint", NO_RUN, "--guidance", "x"], "--guidance"),
        (["--out", "r", "--checkpoint", NO_RUN, "--data", "tape:"], "--data"),
        (["--out", "r", "--checkpoint", NO_RUN], "--checkpoint"),
    ],
    "launch.export": [
        ([], "--checkpoint"),
        (["--checkpoint", NO_RUN], "--output"),
        (["--checkpoint", NO_RUN, "--output", "o", "--kinds", "onnx"], "--kinds"),
        (["--checkpoint", NO_RUN, "--output", "o", "--batch", "0"], "--batch"),
        (["--checkpoint", NO_RUN, "--output", "o", "--frames", "0"], "--frames"),
        (["--checkpoint", NO_RUN, "--output", "o", "--num_steps", "0"], "--num_steps"),
        (["--checkpoint", NO_RUN, "--output", "o", "--platforms", "gpu0"], "--platforms"),
        (["--checkpoint", NO_RUN, "--output", "o"], "--checkpoint"),
        (["--checkpoint", NO_RUN, "--output", "o", "extra"], "unexpected arguments"),
    ],
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_every_bad_command_line_is_one_line_naming_the_flag(module, tmp_path):
    cases = CASES[module]
    # Relative output paths land in the test's folder.
    argvs = [[a if a != "o" and a != "r" else str(tmp_path / a) for a in argv] for argv, _ in cases]
    results = bad_invocations(module, argvs)
    for (argv, named), result in zip(cases, results, strict=True):
        lines = result["stderr"].strip().splitlines()
        assert result["code"] != 0, (argv, result)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, result["stderr"])
        assert named in lines[0], (argv, lines[0])
        assert "Traceback" not in result["stderr"]
