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
