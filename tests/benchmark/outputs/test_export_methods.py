"""Export and predict round trips of the methods that change the network (``wrap_backbone``: split_brain's two
copies) or what it sees (``feature_input``: Lab, L only): predict must rebuild the trained network and feed it
the training's input, so that its labels are the run's."""
import pandas as pd
import pytest

from benchmark.cli.main import main
from registry.pretexts import PRETEXTS, Pretext, pretext_class

CHANGED = [n for n in PRETEXTS.names() if pretext_class(n).trains and (
    pretext_class(n).wrap_backbone is not Pretext.wrap_backbone
    or pretext_class(n).feature_input is not Pretext.feature_input)]


def test_split_brain_is_among_the_methods_that_change_the_network():
    assert "split_brain" in CHANGED and "colorization" in CHANGED


@pytest.mark.parametrize("pretext", CHANGED)
def test_export_predict_reproduces_the_run_labels(pretext, tmp_path, capsys):
    from tests.conftest import write_photo_folder

    folder = write_photo_folder(tmp_path / "photos", n_per_class=8)
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick", "--dataset", str(folder), "--backbones", "resnet18",
                 "--pretexts", pretext, "--clusterers", "kmeans", "--image-size", "32", "--max-steps", "2",
                 "--batch-size", "8", "--probe-k", "4", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    exp = tmp_path / "recipe"
    cell = f"resnet18/{pretext}/kmeans"
    assert main(["export", str(out), "--cell", cell, "--to", str(exp)]) == 0
    assert "labels reproduce the run: True" in capsys.readouterr().out
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(exp), str(folder), "--out", str(pred), "--no-progress"]) == 0
    merged = pd.read_csv(out / "assignments.csv").merge(pd.read_csv(pred), on="path")
    assert len(merged) == 16 and (merged[f"resnet18/random/{pretext}/kmeans/0"] == merged["cluster"]).all()


def test_export_predict_of_every_joint_embedding_method_reproduces_the_run_labels(tmp_path, capsys):
    """One run of the four joint-embedding methods, then each cell exported and predicted: the recipe keeps the
    online backbone the method trained (its projector, queue and momentum encoder stay behind)."""
    from registry.pretexts._joint import JointEmbedding
    from tests.conftest import write_photo_folder

    joint = [n for n in PRETEXTS.names() if issubclass(pretext_class(n), JointEmbedding)]
    assert {"simclr", "moco", "byol", "dino"} <= set(joint)
    folder = write_photo_folder(tmp_path / "photos", n_per_class=8)
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick", "--dataset", str(folder), "--backbones", "resnet18",
                 "--pretexts", ",".join(joint), "--clusterers", "kmeans", "--image-size", "32", "--max-steps", "2",
                 "--batch-size", "8", "--probe-k", "4", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    runs = pd.read_csv(out / "assignments.csv")
    for pretext in joint:
        cell = f"resnet18/{pretext}/kmeans"
        exp = tmp_path / f"recipe-{pretext}"
        assert main(["export", str(out), "--cell", cell, "--to", str(exp)]) == 0
        assert "labels reproduce the run: True" in capsys.readouterr().out
        pred = tmp_path / f"pred-{pretext}.csv"
        assert main(["predict", str(exp), str(folder), "--out", str(pred), "--no-progress"]) == 0
        merged = runs.merge(pd.read_csv(pred), on="path")
        assert len(merged) == 16, pretext
        assert (merged[f"resnet18/random/{pretext}/kmeans/0"] == merged["cluster"]).all(), pretext
