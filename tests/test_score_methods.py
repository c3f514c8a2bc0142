"""mdg.score_methods: methods chosen by name with clear errors, and score_unit dispatching each method
to the numerics of mdg.scoring on the clip means, on the session's tiny trained classifier."""
import numpy as np
import pytest

from mdg import clip_outputs, objectives, score_methods, scoring, sharding
from mdg.config_defaults import base_config

CLASSIFIER_METHODS = "neg_logit, centre, knn, centre_domain, mahalanobis_embedding, lof"
RECONSTRUCTION_METHODS = "mse, mahalanobis, knn, centre_domain, mahalanobis_embedding, lof"


def scores_config(model_name, scores):
    c = base_config()
    c.model.name = model_name
    c.eval.scores = scores
    return c


def test_from_config_accepts_fitting_methods_in_order():
    assert score_methods.from_config(scores_config("mobilenet_v2", " knn, neg_logit ,")) == ["knn", "neg_logit"]
    assert score_methods.from_config(scores_config("autoencoder", "mahalanobis,mse,lof")) == [
        "mahalanobis", "mse", "lof"]


@pytest.mark.parametrize("model_name,scores,message", [
    ("mobilenet_v2", "neg_logit,cosine", rf"unknown method\(s\) \['cosine'\]; mobilenet_v2 \(classifier\) "
                                         rf"supports {CLASSIFIER_METHODS}$"),
    ("mobilenet_v2", "mse,knn", rf"\['mse'\] need\(s\) another kind of model; mobilenet_v2 \(classifier\) "
                                rf"supports {CLASSIFIER_METHODS}$"),
    ("autoencoder", "centre", rf"\['centre'\] need\(s\) another kind of model; autoencoder "
                              rf"\(reconstruction\) supports {RECONSTRUCTION_METHODS}$"),
    ("autoencoder", " , ", rf"no method given; autoencoder \(reconstruction\) supports {RECONSTRUCTION_METHODS}$"),
    ("autoencoder", "mse,mse", "names a method twice"),
])
def test_from_config_rejects_unknown_and_unfitting_methods(model_name, scores, message):
    with pytest.raises(ValueError, match=message):
        score_methods.from_config(scores_config(model_name, scores))


def test_score_unit_gives_every_classifier_method_and_dispatches_to_the_numerics(trained_classifier):
    config, unit, _, graphdef, state = trained_classifier
    model_state = {"params": state["params"], "rest": state["rest"]}
    objective, mesh = objectives.from_config(config), sharding.make_mesh(1)
    methods = [name for name, method in score_methods.METHODS.items() if "classifier" in method.kinds]
    assert ", ".join(methods) == CLASSIFIER_METHODS
    scored = score_methods.score_unit(config, unit, graphdef, model_state, mesh, objective, methods)

    num_train, num_test = len(unit.train["log_mel"]), len(unit.test["log_mel"])
    assert sorted(scored.scores) == sorted(methods)
    for name, (train_scores, test_scores) in scored.scores.items():
        assert train_scores.shape == (num_train,) and test_scores.shape == (num_test,), name
        assert train_scores.dtype == test_scores.dtype == np.float64, name
        assert np.all(np.isfinite(train_scores)) and np.all(np.isfinite(test_scores)), name

    # The same clip means through the pipeline's function, then the numerics called directly.
    num_classes = len(unit.class_names)
    common = dict(window=config.input.window, hop=config.input.eval_hop, flatten=config.input.flatten,
                  batch_size=config.input.eval_batch_size)
    train_means = clip_outputs.clip_means(
        graphdef, model_state, objective, ("embedding", "neg_logit"), unit.train["log_mel"], mesh,
        clip_classes=np.eye(num_classes, dtype=bool)[unit.train_classes], **common)
    test_means = clip_outputs.clip_means(
        graphdef, model_state, objective, ("embedding", "neg_logit"), unit.test["log_mel"], mesh,
        clip_classes=unit.test_classes, **common)
    np.testing.assert_array_equal(scored.train_embedding, train_means["embedding"])
    np.testing.assert_array_equal(scored.test_embedding, test_means["embedding"])
    np.testing.assert_allclose(scored.scores["neg_logit"][1], test_means["neg_logit"], rtol=1e-6)

    # kNN: per-domain nearest training clips; training clips leave themselves out.
    is_target = unit.train["domain"] == 1
    want_knn_train = scoring.knn_clip_scores(train_means["embedding"], train_means["embedding"], is_target,
                                             k=config.eval.knn_k, exclude=np.arange(num_train))
    want_knn_test = scoring.knn_clip_scores(test_means["embedding"], train_means["embedding"], is_target,
                                            k=config.eval.knn_k)
    np.testing.assert_allclose(scored.scores["knn"][0], want_knn_train, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scored.scores["knn"][1], want_knn_test, rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(want_knn_train) > 1e-6)      # no clip found itself

    # Centre: nearest head centre among the classes of the clip's own section (class names
    # "section_SS|a=V"; test clip 2, attribute unseen, still belongs to section 0).
    centres = np.asarray(state["params"]["head"]["centres"][...])
    class_section = np.array([int(name[len("section_"):][:2]) for name in unit.class_names])
    for split, got in ((unit.train, scored.scores["centre"][0]), (unit.test, scored.scores["centre"][1])):
        allowed = split["section"][:, None] == class_section[None, :]
        means = train_means if split is unit.train else test_means
        np.testing.assert_allclose(got, scoring.centre_distance(means["embedding"], centres, allowed), rtol=1e-12)
    everywhere = scoring.centre_distance(test_means["embedding"], centres, np.ones((num_test, num_classes), bool))
    assert np.all(scored.scores["centre"][1] >= everywhere)


def test_scores_constant_within_a_section_are_flagged(caplog):
    groups = np.array([0, 0, 0, 1, 1, 1])
    varied = np.array([0.1, 0.5, 0.3, 2.0, 2.5, 1.0])
    with caplog.at_level("WARNING"):
        assert not score_methods.warn_if_constant("fan", "neg_logit", varied, groups)
        assert not caplog.text
        flat = varied.copy()
        flat[3:] = 7.25 + np.array([0.0, 3e-7, -2e-7])   # float32 noise around one value
        assert score_methods.warn_if_constant("fan", "neg_logit", flat, groups)
    assert "fan: neg_logit scores are constant within section group(s) [1]" in caplog.text
