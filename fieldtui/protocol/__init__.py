"""The wire vocabulary shared by the agent, the console and the SSH ``--json`` path.

Pydantic models only, no heavy imports: the agent imports this module, and so does every console
service. What the agent returns over HTTP, what ``fieldtui-agent ... --json`` prints and what the console
parses are these models and nothing else, so a status is never spelled two ways.
"""

# The release of both programs (one distribution); pyproject.toml reads it from here.
__version__ = "0.1.0"

# One import path for every wire model (``from fieldtui.protocol import Sample``); the submodules only
# keep each subject's models together.
from fieldtui.protocol.bench import (  # noqa: F401
    BenchmarkConfig,
    BenchmarkList,
    BenchmarkRequest,
    BenchmarkResult,
    BenchmarkRun,
    BenchMode,
    BenchRound,
    CameraBench,
    Comparison,
    LatencyStats,
    SystemUse,
    benchmark_table,
    comparison_text,
    verdict_of,
    with_console_hint,
)
from fieldtui.protocol.cameras import (  # noqa: F401
    CAMERA_NAME_PATTERN,
    CameraChange,
    CameraList,
    CameraStatus,
)
from fieldtui.protocol.core import (  # noqa: F401
    API_VERSION,
    DEFAULT_PORT,
    SERVICE_TYPE,
    Ack,
    AgentPaths,
    BackendInfo,
    CameraHealth,
    Detection,
    DetectResult,
    DeviceInfo,
    DeviceRecord,
    DeviceStatus,
    DiscoveryResult,
    HealthLevel,
    HealthReport,
    ImageResult,
    Job,
    JobList,
    JobState,
    LinkKind,
    LogLine,
    LogPage,
    Model,
    ModelInfo,
    PipelineState,
    PipelineStatus,
    Problem,
    Sample,
    SourceChange,
    SourceStatus,
    SSHEndpoint,
    StageTimes,
    ThreadPolicy,
    ThreadsChange,
    ThreadTrial,
    TokenInfo,
    first_error,
)
from fieldtui.protocol.engines import (  # noqa: F401
    EngineFingerprint,
    EngineInfo,
    EngineList,
    EngineRebuildRequest,
    EngineRebuildResult,
    Precision,
    RuntimeIdentity,
)
from fieldtui.protocol.forwarding import (  # noqa: F401
    TRIO_BASE_URL,
    ForwardingRules,
    ForwardingSettings,
    ForwardingState,
    ForwardingStats,
    ForwardingUpdate,
    ForwardMode,
    ForwardResult,
    ForwardTestRequest,
    TrioError,
)
from fieldtui.protocol.series import SeriesPage, SeriesPoint  # noqa: F401
from fieldtui.protocol.store import (  # noqa: F401
    BAD_VERDICTS,
    DamagedVersion,
    HistoryAction,
    HistoryOutcome,
    ModelEvent,
    ModelFormat,
    ModelHistoryEntry,
    ModelList,
    ModelManifest,
    ModelVersion,
    ProbationStatus,
    PullStatus,
    PushResult,
    RegistryOffer,
    RegistryRollout,
    RollbackPlan,
    TensorInfo,
    Verdict,
)
