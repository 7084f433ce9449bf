"""IKEv2 proposals: strongSwan proposal strings, display form, selection and diagnosis.

``parse_proposals(ProtocolId.ESP, "aes256-sha256-modp3072-ke1_frodoa3")`` gives Proposals;
``str(proposal)`` prints them as strongSwan logs them; ``select_proposal()`` is the
responder's choice (raising NoProposalChosen with a Diagnosis), ``check_selected()`` the
initiator's check of the answer.
"""

from pqike.proposal.model import (
    KE_TYPES,
    Proposal,
    Transform,
    algorithm_name,
    format_proposals,
    is_aead,
    is_ke_type,
)
from pqike.proposal.parse import (
    KEYWORDS,
    ProposalError,
    default_proposals,
    keyword_string,
    parse_proposal,
    parse_proposals,
)
from pqike.proposal.select import (
    PRIVATE_SKIPPED_LOG,
    PRIVATE_USE,
    Diagnosis,
    MismatchKind,
    NoProposalChosen,
    PairDiagnosis,
    PrivateUseRefused,
    TypeMismatch,
    check_selected,
    diagnose,
    select_proposal,
    strip_ke,
)

__all__ = [
    "KEYWORDS",
    "KE_TYPES",
    "PRIVATE_SKIPPED_LOG",
    "PRIVATE_USE",
    "Diagnosis",
    "MismatchKind",
    "NoProposalChosen",
    "PairDiagnosis",
    "PrivateUseRefused",
    "Proposal",
    "ProposalError",
    "Transform",
    "TypeMismatch",
    "algorithm_name",
    "check_selected",
    "default_proposals",
    "diagnose",
    "format_proposals",
    "is_aead",
    "is_ke_type",
    "keyword_string",
    "parse_proposal",
    "parse_proposals",
    "select_proposal",
    "strip_ke",
]
