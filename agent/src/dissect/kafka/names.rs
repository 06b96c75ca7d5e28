//! Kafka's numbering: API key names, the first flexible (KIP-482) version of each API, and
//! error code names, as in Apache Kafka's `clients/src/main/resources/common/message/*.json`
//! and `Errors.java`.

/// API names by key (0..=87).
const APIS: &[&str] = &[
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "LeaderAndIsr",
    "StopReplica",
    "UpdateMetadata",
    "ControlledShutdown",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeAcls",
    "CreateAcls",
    "DeleteAcls",
    "DescribeConfigs",
    "AlterConfigs",
    "AlterReplicaLogDirs",
    "DescribeLogDirs",
    "SaslAuthenticate",
    "CreatePartitions",
    "CreateDelegationToken",
    "RenewDelegationToken",
    "ExpireDelegationToken",
    "DescribeDelegationToken",
    "DeleteGroups",
    "ElectLeaders",
    "IncrementalAlterConfigs",
    "AlterPartitionReassignments",
    "ListPartitionReassignments",
    "OffsetDelete",
    "DescribeClientQuotas",
    "AlterClientQuotas",
    "DescribeUserScramCredentials",
    "AlterUserScramCredentials",
    "Vote",
    "BeginQuorumEpoch",
    "EndQuorumEpoch",
    "DescribeQuorum",
    "AlterPartition",
    "UpdateFeatures",
    "Envelope",
    "FetchSnapshot",
    "DescribeCluster",
    "DescribeProducers",
    "BrokerRegistration",
    "BrokerHeartbeat",
    "UnregisterBroker",
    "DescribeTransactions",
    "ListTransactions",
    "AllocateProducerIds",
    "ConsumerGroupHeartbeat",
    "ConsumerGroupDescribe",
    "ControllerRegistration",
    "GetTelemetrySubscriptions",
    "PushTelemetry",
    "AssignReplicasToDirs",
    "ListClientMetricsResources",
    "DescribeTopicPartitions",
    "ShareGroupHeartbeat",
    "ShareGroupDescribe",
    "ShareFetch",
    "ShareAcknowledge",
    "AddRaftVoter",
    "RemoveRaftVoter",
    "UpdateRaftVoter",
    "InitializeShareGroupState",
    "ReadShareGroupState",
    "WriteShareGroupState",
    "DeleteShareGroupState",
    "ReadShareGroupStateSummary",
];

/// First flexible version per API key (`None`: never flexible). Keys past the table were
/// born flexible.
const FLEXIBLE_FROM: &[Option<i16>] = &[
    Some(9),  // Produce
    Some(12), // Fetch
    Some(6),  // ListOffsets
    Some(9),  // Metadata
    Some(4),  // LeaderAndIsr
    Some(2),  // StopReplica
    Some(6),  // UpdateMetadata
    Some(3),  // ControlledShutdown
    Some(8),  // OffsetCommit
    Some(6),  // OffsetFetch
    Some(3),  // FindCoordinator
    Some(6),  // JoinGroup
    Some(4),  // Heartbeat
    Some(4),  // LeaveGroup
    Some(4),  // SyncGroup
    Some(5),  // DescribeGroups
    Some(3),  // ListGroups
    None,     // SaslHandshake
    Some(3),  // ApiVersions
    Some(5),  // CreateTopics
    Some(4),  // DeleteTopics
    Some(2),  // DeleteRecords
    Some(2),  // InitProducerId
    Some(4),  // OffsetForLeaderEpoch
    Some(3),  // AddPartitionsToTxn
    Some(3),  // AddOffsetsToTxn
    Some(3),  // EndTxn
    Some(1),  // WriteTxnMarkers
    Some(3),  // TxnOffsetCommit
    Some(2),  // DescribeAcls
    Some(2),  // CreateAcls
    Some(2),  // DeleteAcls
    Some(4),  // DescribeConfigs
    Some(2),  // AlterConfigs
    Some(2),  // AlterReplicaLogDirs
    Some(2),  // DescribeLogDirs
    Some(2),  // SaslAuthenticate
    Some(2),  // CreatePartitions
    Some(2),  // CreateDelegationToken
    Some(2),  // RenewDelegationToken
    Some(2),  // ExpireDelegationToken
    Some(2),  // DescribeDelegationToken
    Some(2),  // DeleteGroups
    Some(2),  // ElectLeaders
    Some(1),  // IncrementalAlterConfigs
    Some(0),  // AlterPartitionReassignments
    Some(0),  // ListPartitionReassignments
    None,     // OffsetDelete
    Some(1),  // DescribeClientQuotas
    Some(1),  // AlterClientQuotas
    Some(0),  // DescribeUserScramCredentials
    Some(0),  // AlterUserScramCredentials
    Some(0),  // Vote
    Some(1),  // BeginQuorumEpoch
    Some(1),  // EndQuorumEpoch
];

/// Largest API key the probe accepts.
pub const MAX_API_KEY: i16 = APIS.len() as i16 - 1;

pub fn api_name(key: i16) -> Option<&'static str> {
    usize::try_from(key).ok().and_then(|k| APIS.get(k)).copied()
}

/// Whether `version` of `key` uses the flexible encoding (compact strings and arrays, tagged
/// fields) and request header v2 / response header v1.
pub fn flexible(key: i16, version: i16) -> bool {
    match usize::try_from(key).ok().map(|k| FLEXIBLE_FROM.get(k)) {
        Some(Some(Some(from))) => version >= *from,
        Some(Some(None)) => false,
        Some(None) => true,
        None => false,
    }
}

/// Error names from -1 (UNKNOWN_SERVER_ERROR) to 128.
const ERRORS: &[&str] = &[
    "UNKNOWN_SERVER_ERROR",
    "NONE",
    "OFFSET_OUT_OF_RANGE",
    "CORRUPT_MESSAGE",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "INVALID_FETCH_SIZE",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "REQUEST_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "REPLICA_NOT_AVAILABLE",
    "MESSAGE_TOO_LARGE",
    "STALE_CONTROLLER_EPOCH",
    "OFFSET_METADATA_TOO_LARGE",
    "NETWORK_EXCEPTION",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "INVALID_TOPIC_EXCEPTION",
    "RECORD_LIST_TOO_LARGE",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "INVALID_REQUIRED_ACKS",
    "ILLEGAL_GENERATION",
    "INCONSISTENT_GROUP_PROTOCOL",
    "INVALID_GROUP_ID",
    "UNKNOWN_MEMBER_ID",
    "INVALID_SESSION_TIMEOUT",
    "REBALANCE_IN_PROGRESS",
    "INVALID_COMMIT_OFFSET_SIZE",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "INVALID_TIMESTAMP",
    "UNSUPPORTED_SASL_MECHANISM",
    "ILLEGAL_SASL_STATE",
    "UNSUPPORTED_VERSION",
    "TOPIC_ALREADY_EXISTS",
    "INVALID_PARTITIONS",
    "INVALID_REPLICATION_FACTOR",
    "INVALID_REPLICA_ASSIGNMENT",
    "INVALID_CONFIG",
    "NOT_CONTROLLER",
    "INVALID_REQUEST",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "POLICY_VIOLATION",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "DUPLICATE_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "INVALID_TXN_STATE",
    "INVALID_PRODUCER_ID_MAPPING",
    "INVALID_TRANSACTION_TIMEOUT",
    "CONCURRENT_TRANSACTIONS",
    "TRANSACTION_COORDINATOR_FENCED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "SECURITY_DISABLED",
    "OPERATION_NOT_ATTEMPTED",
    "KAFKA_STORAGE_ERROR",
    "LOG_DIR_NOT_FOUND",
    "SASL_AUTHENTICATION_FAILED",
    "UNKNOWN_PRODUCER_ID",
    "REASSIGNMENT_IN_PROGRESS",
    "DELEGATION_TOKEN_AUTH_DISABLED",
    "DELEGATION_TOKEN_NOT_FOUND",
    "DELEGATION_TOKEN_OWNER_MISMATCH",
    "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
    "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
    "DELEGATION_TOKEN_EXPIRED",
    "INVALID_PRINCIPAL_TYPE",
    "NON_EMPTY_GROUP",
    "GROUP_ID_NOT_FOUND",
    "FETCH_SESSION_ID_NOT_FOUND",
    "INVALID_FETCH_SESSION_EPOCH",
    "LISTENER_NOT_FOUND",
    "TOPIC_DELETION_DISABLED",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "UNSUPPORTED_COMPRESSION_TYPE",
    "STALE_BROKER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
    "MEMBER_ID_REQUIRED",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "GROUP_MAX_SIZE_REACHED",
    "FENCED_INSTANCE_ID",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "ELECTION_NOT_NEEDED",
    "NO_REASSIGNMENT_IN_PROGRESS",
    "GROUP_SUBSCRIBED_TO_TOPIC",
    "INVALID_RECORD",
    "UNSTABLE_OFFSET_COMMIT",
    "THROTTLING_QUOTA_EXCEEDED",
    "PRODUCER_FENCED",
    "RESOURCE_NOT_FOUND",
    "DUPLICATE_RESOURCE",
    "UNACCEPTABLE_CREDENTIAL",
    "INCONSISTENT_VOTER_SET",
    "INVALID_UPDATE_VERSION",
    "FEATURE_UPDATE_FAILED",
    "PRINCIPAL_DESERIALIZATION_FAILURE",
    "SNAPSHOT_NOT_FOUND",
    "POSITION_OUT_OF_RANGE",
    "UNKNOWN_TOPIC_ID",
    "DUPLICATE_BROKER_REGISTRATION",
    "BROKER_ID_NOT_REGISTERED",
    "INCONSISTENT_TOPIC_ID",
    "INCONSISTENT_CLUSTER_ID",
    "TRANSACTIONAL_ID_NOT_FOUND",
    "FETCH_SESSION_TOPIC_ID_ERROR",
    "INELIGIBLE_REPLICA",
    "NEW_LEADER_ELECTED",
    "OFFSET_MOVED_TO_TIERED_STORAGE",
    "FENCED_MEMBER_EPOCH",
    "UNRELEASED_INSTANCE_ID",
    "UNSUPPORTED_ASSIGNOR",
    "STALE_MEMBER_EPOCH",
    "MISMATCHED_ENDPOINT_TYPE",
    "UNSUPPORTED_ENDPOINT_TYPE",
    "UNKNOWN_CONTROLLER_ID",
    "UNKNOWN_SUBSCRIPTION_ID",
    "TELEMETRY_TOO_LARGE",
    "INVALID_REGISTRATION",
    "TRANSACTION_ABORTABLE",
    "INVALID_RECORD_STATE",
    "SHARE_SESSION_NOT_FOUND",
    "INVALID_SHARE_SESSION_EPOCH",
    "FENCED_STATE_EPOCH",
    "INVALID_VOTER_KEY",
    "DUPLICATE_VOTER",
    "VOTER_NOT_FOUND",
    "INVALID_REGULAR_EXPRESSION",
];

/// The name of an error code; codes past the table get `ERROR_<code>`.
pub fn error_name(code: i16) -> String {
    usize::try_from(i32::from(code) + 1)
        .ok()
        .and_then(|i| ERRORS.get(i))
        .map_or_else(|| format!("ERROR_{code}"), |n| (*n).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        assert_eq!(api_name(18), Some("ApiVersions"));
        assert_eq!(api_name(71), Some("GetTelemetrySubscriptions"));
        assert_eq!(api_name(87), Some("ReadShareGroupStateSummary"));
        assert_eq!(api_name(-1), None);
        assert_eq!(FLEXIBLE_FROM.len(), 55);
        assert!(flexible(0, 9) && !flexible(0, 8));
        assert!(flexible(1, 12) && !flexible(1, 11));
        assert!(flexible(18, 3) && !flexible(17, 1));
        assert!(flexible(71, 0) && !flexible(47, 0));
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(35), "UNSUPPORTED_VERSION");
        assert_eq!(error_name(79), "MEMBER_ID_REQUIRED");
        assert_eq!(error_name(100), "UNKNOWN_TOPIC_ID");
        assert_eq!(error_name(900), "ERROR_900");
    }
}
