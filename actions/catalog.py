"""The catalog of response actions, defined once here and synced into the database.

`sync_catalog` (a data migration and the `sync_catalog` command) makes the `ResponseAction`
rows match these definitions; nothing else writes them.
"""

from dataclasses import asdict, dataclass, field

NOT_REQUIRED = "not_required"
CRITICAL = "critical"
RECOMMENDED = "recommended"

AUTO_APPROVAL_REQUIRED = "Auto-approval must be enabled in order to use this response action"

# The actions the portal's own rules name: what is isolated, and which remote shells are open.
ISOLATE_ENDPOINT = "isolate_endpoint"
RESTORE_CONNECTION = "restore_connection"
START_REMOTE_SHELL = "start_remote_shell"


@dataclass(frozen=True)
class Parameter:
    """One field of an action's request form, stored under `name` in the request's parameters."""

    name: str
    label: str
    help: str
    required: bool = True


@dataclass(frozen=True)
class ActionDefinition:
    key: str
    name: str
    category: str
    description: str
    parameters: tuple[Parameter, ...] = field(default_factory=tuple)
    needs_auto_approval: bool = False

    def parameters_as_json(self) -> list[dict]:
        return [asdict(parameter) for parameter in self.parameters]


ENDPOINTS = Parameter(
    "endpoints",
    "Endpoints",
    "One per line: hostname, IP address or agent GUID. Duplicates are removed; at most 100.",
)
ONE_ENDPOINT = Parameter(
    "endpoints", "Endpoint", "Exactly one endpoint: hostname, IP address or agent GUID."
)


def _description(
    help_text: str = "Why this action is taken, for the customer's records.",
) -> Parameter:
    return Parameter("description", "Description", help_text)


ACTIONS: tuple[ActionDefinition, ...] = (
    # Approval not required
    ActionDefinition(
        "link_workbench_alert",
        "Link or Unlink Workbench Alerts",
        NOT_REQUIRED,
        "Attaches Workbench alerts to an incident, or detaches them, so the investigation "
        "record groups the right evidence.",
        (
            Parameter("operation", "Operation", "Link the alerts to the incident, or unlink them."),
            Parameter(
                "alert_ids",
                "Alert IDs",
                "One or more Workbench alert IDs, such as WB-12345-20261130-00001.",
            ),
            Parameter("incident_id", "Incident ID", "The incident the alerts belong to."),
        ),
    ),
    ActionDefinition(
        "add_suspicious_object_exception",
        "Add Exceptions in Suspicious Object Management",
        NOT_REQUIRED,
        "Marks files, URLs, addresses or domains as trusted so that they stop raising "
        "suspicious-object detections.",
        (
            Parameter(
                "objects",
                "Objects",
                "One per line as type:value; types sha1, sha256, url, ip, domain. At most 100.",
            ),
            _description(),
        ),
    ),
    ActionDefinition(
        "add_detection_model_exception",
        "Add Exceptions in Detection Model Management",
        NOT_REQUIRED,
        "Stops a detection model from alerting on one endpoint or account that is known to "
        "behave that way legitimately.",
        (
            Parameter("detection_model", "Detection model", "The detection model to except."),
            Parameter("scope", "Scope", "The endpoint or the account the exception applies to."),
            _description(),
        ),
    ),
    ActionDefinition(
        "dump_process_memory",
        "Conduct Memory Dumps of Processes",
        NOT_REQUIRED,
        "Captures the memory of one running process on an endpoint for analysis, through the "
        "endpoint's active remote shell session.",
        (
            ONE_ENDPOINT,
            Parameter("process", "Process", "The process ID (PID) or the process name."),
        ),
    ),
    # Critical
    ActionDefinition(
        "add_to_block_list",
        "Add Objects to Block List",
        CRITICAL,
        "Blocks files, URLs, addresses or domains across the customer's protected endpoints "
        "and network sensors.",
        (
            Parameter(
                "objects",
                "Objects",
                "One per line as type:value; types sha1, url, ip, domain. At most 100.",
            ),
            _description(),
        ),
    ),
    ActionDefinition(
        "collect_evidence",
        "Collect Evidence",
        CRITICAL,
        "Gathers forensic artifacts such as AmCache, ShimCache, autoruns, event logs and the "
        "MFT from endpoints into an evidence package.",
        (
            ENDPOINTS,
            Parameter(
                "evidence_types",
                "Evidence types",
                "The artifacts to collect: AmCache, ShimCache, AutoRun, Event Log, MFT and more.",
            ),
        ),
        needs_auto_approval=True,
    ),
    ActionDefinition(
        "collect_file",
        "Collect Suspicious File Sample",
        CRITICAL,
        "Copies one file from an endpoint into a password-protected archive for analysis.",
        (
            ONE_ENDPOINT,
            Parameter(
                "file_path", "File path", "Absolute path of the file, Windows or POSIX style."
            ),
        ),
    ),
    ActionDefinition(
        "disable_user_account",
        "Disable User Account",
        CRITICAL,
        "Disables a directory account and signs it out of its sessions, so that a compromised "
        "identity can no longer be used.",
        (
            Parameter(
                "account",
                "Account",
                r"A UPN (user@domain), DOMAIN\user, or a sAMAccountName.",
            ),
            _description(),
        ),
    ),
    ActionDefinition(
        "isolate_endpoint",
        "Isolate Endpoint",
        CRITICAL,
        "Cuts the endpoint off the network, keeping only the link to its managing server.",
        (ENDPOINTS, _description()),
    ),
    ActionDefinition(
        "quarantine_email",
        "Quarantine Email Message",
        CRITICAL,
        "Moves one e-mail message out of a mailbox into quarantine, where the user can no "
        "longer open it.",
        (
            Parameter("mailbox", "Mailbox", "The e-mail address of the mailbox."),
            Parameter("message_id", "Message-ID", "The message's Message-ID header, as <id@host>."),
        ),
    ),
    ActionDefinition(
        "restore_connection",
        "Restore Connection",
        CRITICAL,
        "Gives an isolated endpoint its network back.",
        (
            Parameter(
                "endpoints",
                "Endpoints",
                "One per line; each must currently be isolated by this portal. At most 100.",
            ),
        ),
    ),
    ActionDefinition(
        "scan_for_malware",
        "Scan for Malware",
        CRITICAL,
        "Runs an on-demand malware scan on endpoints and reports what it finds.",
        (ENDPOINTS,),
    ),
    ActionDefinition(
        "terminate_process",
        "Terminate Process",
        CRITICAL,
        "Stops a running process on one endpoint, identified by the SHA-1 of its file.",
        (
            ONE_ENDPOINT,
            Parameter("sha1", "SHA-1", "The SHA-1 of the process's file: 40 hexadecimal digits."),
            Parameter(
                "file_name", "File name", "The process's file name, if known.", required=False
            ),
        ),
    ),
    # Recommended
    ActionDefinition(
        "collect_network_analysis_package",
        "Collect Network Analysis Package",
        RECOMMENDED,
        "Retrieves the packet capture and metadata that a network appliance recorded around "
        "one detection.",
        (
            Parameter("appliance", "Appliance", "The appliance's name or IP address."),
            Parameter("detection_id", "Detection ID", "The detection to collect the package for."),
        ),
    ),
    ActionDefinition(
        "deploy_tippingpoint_filter",
        "Configure and Deploy TippingPoint Filter Policy",
        RECOMMENDED,
        "Turns on the intrusion-prevention filters for given vulnerabilities on the customer's "
        "TippingPoint devices.",
        (
            Parameter(
                "cve_ids", "CVE IDs", "One or more CVE IDs such as CVE-2026-12345, one per line."
            ),
            Parameter(
                "sms_profile", "SMS profile", "The Security Management System profile to update."
            ),
        ),
    ),
    ActionDefinition(
        "run_osquery",
        "Run osquery",
        RECOMMENDED,
        "Runs one read-only osquery query on endpoints and returns the rows it finds.",
        (
            ENDPOINTS,
            Parameter("query", "Query", "One read-only SELECT statement."),
        ),
        needs_auto_approval=True,
    ),
    ActionDefinition(
        "run_custom_script",
        "Run Remote Custom Script",
        RECOMMENDED,
        "Runs a PowerShell or Bash script from the organization's script library on endpoints.",
        (
            ENDPOINTS,
            Parameter("script", "Script", "A script uploaded earlier to the script library."),
            Parameter(
                "parameters",
                "Parameters",
                "Command-line arguments passed to the script.",
                required=False,
            ),
        ),
    ),
    ActionDefinition(
        "run_yara_rules",
        "Run YARA Rules",
        RECOMMENDED,
        "Scans files or process memory on endpoints with YARA rules and reports the matches.",
        (
            ENDPOINTS,
            Parameter("rule_file", "Rule file", "A YARA rule file under 1 MB that compiles."),
            Parameter(
                "target_path",
                "Target path",
                "Folder or file to scan (give this or a process name).",
                required=False,
            ),
            Parameter(
                "process_name",
                "Process name",
                "Process whose memory to scan (give this or a target path).",
                required=False,
            ),
        ),
        needs_auto_approval=True,
    ),
    ActionDefinition(
        "start_remote_shell",
        "Start Remote Shell Session",
        RECOMMENDED,
        "Opens an interactive shell on one endpoint for a limited validity period, after "
        "which it closes by itself.",
        (
            ONE_ENDPOINT,
            Parameter("reason", "Reason", "Why a live shell on this endpoint is needed."),
        ),
    ),
    ActionDefinition(
        "submit_sandbox",
        "Submit for Sandbox Analysis",
        RECOMMENDED,
        "Sends URLs or a collected file sample to an isolated sandbox that detonates them and "
        "reports their behaviour.",
        (
            Parameter("urls", "URLs", "One per line (give these or a SHA-1).", required=False),
            Parameter(
                "sha1",
                "SHA-1",
                "SHA-1 of a file sample collected earlier (give this or URLs).",
                required=False,
            ),
        ),
    ),
)

BY_KEY = {action.key: action for action in ACTIONS}


@dataclass(frozen=True)
class Reversal:
    """How a request of one action is undone: by a request of action `undo`, whose parameter
    `parameter` lists the original's targets of kind `target_kind` that succeeded and are
    still in force (those already reversed since are left out)."""

    undo: str
    parameter: str
    target_kind: str


# The reversible pairs: a successful request of the key's action has an Undo button, which
# fills in a request of the reversing action (approved like any other request).
REVERSALS: dict[str, Reversal] = {
    # The endpoints it isolated and no Restore Connection has restored since.
    ISOLATE_ENDPOINT: Reversal(
        undo=RESTORE_CONNECTION, parameter="endpoints", target_kind="endpoint"
    ),
}


def _check_reversals() -> None:
    """A reversal that names a missing action or parameter stops the portal from loading."""
    for key, reversal in REVERSALS.items():
        if key not in BY_KEY or reversal.undo not in BY_KEY:
            raise ValueError(f"The reversal of {key} names an action the catalog does not have.")
        if reversal.parameter not in {p.name for p in BY_KEY[reversal.undo].parameters}:
            raise ValueError(
                f"The reversal of {key} fills `{reversal.parameter}`, which {reversal.undo} lacks."
            )


_check_reversals()
