"""Key Exchange Method IDs (IANA "Transform Type 4 - Key Exchange Method Transform IDs").

RFC 9370 renamed transform type 4 to "Key Exchange Method" and made ADDKE1..ADDKE7 share
its ID registry. IDs >= 1024 are strongSwan private-use values: the 6.0.0beta4..beta6
numbering used by the pq-strongswan reference walkthrough (strongSwan commit 5887967135).
This is the one place these numbers live; ``pqike.wire.iana`` re-exports it.
"""

from __future__ import annotations

from enum import IntEnum


class KeMethod(IntEnum):
    NONE = 0
    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26
    ECP_224_BP = 27
    ECP_256_BP = 28
    ECP_384_BP = 29
    ECP_512_BP = 30
    CURVE_25519 = 31
    CURVE_448 = 32
    ML_KEM_512 = 35
    ML_KEM_768 = 36
    ML_KEM_1024 = 37
    # strongSwan 6.0.0beta4+ private use (liboqs-backed in the oqs/frodo plugins)
    KYBER_L1 = 1080
    KYBER_L3 = 1081
    KYBER_L5 = 1082
    FRODO_AES_L1 = 1083
    FRODO_AES_L3 = 1084
    FRODO_AES_L5 = 1085
    FRODO_SHAKE_L1 = 1086
    FRODO_SHAKE_L3 = 1087
    FRODO_SHAKE_L5 = 1088
    BIKE_L1 = 1089
    BIKE_L3 = 1090
    BIKE_L5 = 1091
    HQC_L1 = 1092
    HQC_L3 = 1093
    HQC_L5 = 1094


# strongSwan proposal keyword and log name of each method (strongSwan
# proposal_keywords_static.txt and key_exchange.c). Keywords are what operators type;
# log names are what `selected proposal:` lines print.
KEYWORDS: dict[str, KeMethod] = {
    "modp768": KeMethod.MODP_768,
    "modp1024": KeMethod.MODP_1024,
    "modp1536": KeMethod.MODP_1536,
    "modp2048": KeMethod.MODP_2048,
    "modp3072": KeMethod.MODP_3072,
    "modp4096": KeMethod.MODP_4096,
    "modp6144": KeMethod.MODP_6144,
    "modp8192": KeMethod.MODP_8192,
    "modp1024s160": KeMethod.MODP_1024_160,
    "modp2048s224": KeMethod.MODP_2048_224,
    "modp2048s256": KeMethod.MODP_2048_256,
    "ecp192": KeMethod.ECP_192,
    "ecp224": KeMethod.ECP_224,
    "ecp256": KeMethod.ECP_256,
    "ecp384": KeMethod.ECP_384,
    "ecp521": KeMethod.ECP_521,
    "ecp224bp": KeMethod.ECP_224_BP,
    "ecp256bp": KeMethod.ECP_256_BP,
    "ecp384bp": KeMethod.ECP_384_BP,
    "ecp512bp": KeMethod.ECP_512_BP,
    "x25519": KeMethod.CURVE_25519,
    "curve25519": KeMethod.CURVE_25519,
    "x448": KeMethod.CURVE_448,
    "curve448": KeMethod.CURVE_448,
    "mlkem512": KeMethod.ML_KEM_512,
    "mlkem768": KeMethod.ML_KEM_768,
    "mlkem1024": KeMethod.ML_KEM_1024,
    "kyber1": KeMethod.KYBER_L1,
    "kyber3": KeMethod.KYBER_L3,
    "kyber5": KeMethod.KYBER_L5,
    "frodoa1": KeMethod.FRODO_AES_L1,
    "frodoa3": KeMethod.FRODO_AES_L3,
    "frodoa5": KeMethod.FRODO_AES_L5,
    "frodos1": KeMethod.FRODO_SHAKE_L1,
    "frodos3": KeMethod.FRODO_SHAKE_L3,
    "frodos5": KeMethod.FRODO_SHAKE_L5,
    "bike1": KeMethod.BIKE_L1,
    "bike3": KeMethod.BIKE_L3,
    "bike5": KeMethod.BIKE_L5,
    "hqc1": KeMethod.HQC_L1,
    "hqc3": KeMethod.HQC_L3,
    "hqc5": KeMethod.HQC_L5,
}

# strongSwan's display names differ from the enum member names only here.
_LOG_NAME_OVERRIDES = {KeMethod.NONE: "NONE"}


def log_name(method: KeMethod) -> str:
    """The name strongSwan prints for a method (``CURVE_25519``, ``ML_KEM_768``)."""
    return _LOG_NAME_OVERRIDES.get(method, method.name)


def keyword(method: KeMethod) -> str:
    """The preferred proposal keyword of a method (first one listed in KEYWORDS)."""
    for word, m in KEYWORDS.items():
        if m == method:
            return word
    raise KeyError(method)
