"""Label, annotation and scheduling-gate keys wfsched reads or writes on Kubernetes objects.

One place for every key, so adapters and tests never spell them twice. wfsched's own
convention uses the ``wfsched.io/`` prefix (docs: the ``scheduler/runtime/workflows.py`` module
docstring):

=====================================  ==========  ==========================================
key                                    where       meaning
=====================================  ==========  ==========================================
``wfsched.io/run-id``                  label       workflow run (unique per run, e.g. a UID)
``wfsched.io/workflow``                label       workflow name, stable across runs
``wfsched.io/step``                    label       abstract task (process, rule, template)
``wfsched.io/task-id``                 annotation  task id, unique within the run
``wfsched.io/depends-on``              annotation  comma-separated task ids this task needs
``wfsched.io/input-size``              annotation  input size in bytes
``wfsched.io/dag-configmap``           annotation  ``<name>`` or ``<namespace>/<name>`` of a
                                                   ConfigMap holding ``dag.json``
``wfsched.io/attempt``                 annotation  1 for the first attempt, >1 for retries
``wfsched.io/peak-memory-bytes``       annotation  observed peak memory (engine-reported)
``wfsched.io/original-memory``         annotation  memory request saved before a resize
``wfsched.io/gang-size``               annotation  pods of this run and step are one gang of
                                                   this many pods, placed all or nothing
``wfsched.io/leader``                  label       on the leader's own pod: its Lease's name
``wfsched.io/cws-state``               label       on CWS state ConfigMaps: the Lease's name
=====================================  ==========  ==========================================

Engine keys are the engines' own (Nextflow's nf-k8s ``getLabels``, Argo's workflow
controller); Kueue's scheduling gates are listed so gated pods can be recognised in logs.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "wfsched.io/"
"""Prefix of every wfsched-owned key."""

# --- wfsched's own convention ----------------------------------------------------------------

RUN_ID_LABEL: Final = "wfsched.io/run-id"
"""Label: the workflow run the pod belongs to (a UID, never a reusable name)."""
GANG_SIZE_ANNOTATION: Final = "wfsched.io/gang-size"
"""Annotation: the pods of this run and step form one gang of this many pods (docs/gangs.md)."""
WORKFLOW_LABEL: Final = "wfsched.io/workflow"
"""Label: the workflow's name, stable across runs (keys for per-workflow statistics)."""
STEP_LABEL: Final = "wfsched.io/step"
"""Label: the abstract task (Nextflow process, Snakemake rule, Argo template)."""
TASK_ID_ANNOTATION: Final = "wfsched.io/task-id"
"""Annotation: the task id, unique within the run (default: the pod name)."""
DEPENDS_ON_ANNOTATION: Final = "wfsched.io/depends-on"
"""Annotation: comma-separated task ids this task depends on."""
INPUT_SIZE_ANNOTATION: Final = "wfsched.io/input-size"
"""Annotation: total input size in bytes (integer or quantity)."""
DAG_CONFIGMAP_ANNOTATION: Final = "wfsched.io/dag-configmap"
"""Annotation: ``<name>`` or ``<namespace>/<name>`` of a ConfigMap with key ``dag.json``."""
DAG_CONFIGMAP_KEY: Final = "dag.json"
"""Key inside the DAG ConfigMap holding the JSON DAG document."""
ATTEMPT_ANNOTATION: Final = "wfsched.io/attempt"
"""Annotation: attempt number, 1 for the first attempt."""
TOOL_ANNOTATION: Final = "wfsched.io/tool"
"""Annotation: the tool the step runs (e.g. ``SAMTOOLS_SORT``), shared by pipelines; with the
container image it keys memory priors. Default: the step name after its last ``:``."""
PEAK_MEMORY_ANNOTATION: Final = "wfsched.io/peak-memory-bytes"
"""Annotation: peak memory in bytes reported after the task ran (predictor training)."""
ORIGINAL_MEMORY_ANNOTATION: Final = "wfsched.io/original-memory"
"""Annotation: the container's memory request (quantity) saved before wfsched resized it."""
LEADER_LABEL: Final = "wfsched.io/leader"
"""Label on the leader's own pod, valued with its Lease's name: the REST Service selects it."""
CWS_STATE_LABEL: Final = "wfsched.io/cws-state"
"""Label on the ConfigMaps keeping CWS executions, valued with the Lease's name."""
CWS_EXECUTION_LABEL: Final = "wfsched.io/cws-execution"
"""Label on a CWS state ConfigMap: a digest of the execution's name (names can be long)."""
CWS_EXECUTION_ANNOTATION: Final = "wfsched.io/cws-execution"
"""Annotation on a CWS state ConfigMap: the execution's name."""
CWS_PART_ANNOTATION: Final = "wfsched.io/cws-part"
"""Annotation on a CWS state ConfigMap: ``<index>/<count>/<generation>`` of a chunked state."""

# --- Common Workflow Scheduler (CWS) compatibility ---------------------------------------------

CWS_MEMORY_SCALED_LABEL: Final = "commonworkflowscheduler/memoryscaled"
"""Label CWS sets (value ``"true"``) on a pod whose memory it changed before binding."""

# --- Nextflow (nf-k8s plugin, K8sTaskHandler.getLabels) ---------------------------------------

NEXTFLOW_APP_LABEL: Final = "nextflow.io/app"
"""Label: always ``nextflow`` on task pods."""
NEXTFLOW_RUN_NAME_LABEL: Final = "nextflow.io/runName"
"""Label: the run name (human-readable; reused names possible)."""
NEXTFLOW_SESSION_LABEL: Final = "nextflow.io/sessionId"
"""Label: ``uuid-<session uuid>``, unique per run and kept across ``-resume``."""
NEXTFLOW_PROCESS_NAME_LABEL: Final = "nextflow.io/processName"
"""Label: the process (the step)."""
NEXTFLOW_TASK_NAME_LABEL: Final = "nextflow.io/taskName"
"""Label: the task name (sanitised, lossy, not unique)."""
NEXTFLOW_QUEUE_LABEL: Final = "nextflow.io/queue"
"""Label: the ``queue`` directive, when set."""

# --- Snakemake (snakemake-executor-plugin-kubernetes) -----------------------------------------

JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
"""Label the Job controller puts on a Job's pods: the Job's name."""
SNAKEMAKE_JOB_PREFIX: Final = "snakejob-"
"""Prefix of the names of the Jobs Snakemake's Kubernetes executor submits."""
SNAKEMAKE_RUN_LABEL: Final = "snakemake.wfsched.io/run"
"""Derived label: the Snakemake invocation (read from the pod's command and env by wfsched)."""
SNAKEMAKE_RULE_LABEL: Final = "snakemake.wfsched.io/rule"
"""Derived label: the rule of the Snakemake job (its ``--allowed-rules``)."""
SNAKEMAKE_WORKFLOW_LABEL: Final = "snakemake.wfsched.io/workflow"
"""Derived label: the Snakefile's identity (checksum of its deployed source archive)."""

# --- Argo Workflows ---------------------------------------------------------------------------

ARGO_WORKFLOW_LABEL: Final = "workflows.argoproj.io/workflow"
"""Label: the Workflow's name."""
ARGO_COMPLETED_LABEL: Final = "workflows.argoproj.io/completed"
"""Label: ``"true"`` once the Workflow controller considers the pod done."""
ARGO_NODE_NAME_ANNOTATION: Final = "workflows.argoproj.io/node-name"
"""Annotation: display path of the node (``wf.dag.task(0)``)."""
ARGO_NODE_ID_ANNOTATION: Final = "workflows.argoproj.io/node-id"
"""Annotation: key of the node in ``Workflow.status.nodes``."""

# --- Kueue (for reference: gated pods cannot be bound; 409) -----------------------------------

KUEUE_QUEUE_NAME_LABEL: Final = "kueue.x-k8s.io/queue-name"
"""Label: the LocalQueue a workload is submitted to."""
KUEUE_MANAGED_LABEL: Final = "kueue.x-k8s.io/managed"
"""Label: ``"true"`` on plain pods Kueue manages."""
KUEUE_ADMISSION_GATE: Final = "kueue.x-k8s.io/admission"
"""Scheduling gate removed when Kueue admits the pod's workload."""
KUEUE_TOPOLOGY_GATE: Final = "kueue.x-k8s.io/topology"
"""Scheduling gate of topology-aware scheduling."""
KUEUE_ELASTIC_JOB_GATE: Final = "kueue.x-k8s.io/elastic-job"
"""Scheduling gate of elastic jobs."""
KUEUE_GATES: Final = (KUEUE_ADMISSION_GATE, KUEUE_TOPOLOGY_GATE, KUEUE_ELASTIC_JOB_GATE)
"""Every Kueue scheduling gate name."""

# --- wfsched's reporting identity ----------------------------------------------------------------

REPORTING_CONTROLLER: Final = "wfsched"
"""``reportingController`` of the Events wfsched emits."""
FIELD_MANAGER: Final = "wfsched"
"""``fieldManager`` of wfsched's writes."""
HISTORY_FIELD_MANAGER: Final = "wfsched-history"
"""``fieldManager`` of the workflow history's key in the store ConfigMap (its own, so that
applying it and applying the memory observations never remove each other)."""
