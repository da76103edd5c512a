"""Synthetic inputs for the benchmark: an org.json for the simulator and the
CSV of new numbers.

Everything is fictional and deterministic (seeded): users uNNNN@example.com,
Okta-style ids "00u" + 17 alphanumerics, and US numbers in the 555-0100..0199
block that the North American numbering plan keeps for fiction, spread over
many real area codes so that libphonenumber accepts them and there are
enough distinct ones (100 per area code).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

# Area codes in service in the US. Each gives 100 fictional numbers
# NPA-555-0100..0199; bench.py keeps only those the tool's own `validate`
# accepts, so a code missing from the bundled metadata is dropped, not used.
AREA_CODES = [
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217,
    218, 219, 224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254,
    256, 260, 262, 267, 269, 270, 276, 281, 301, 302, 303, 304, 305, 307, 308,
    309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 323, 325, 330,
    334, 336, 337, 339, 347, 351, 352, 360, 361, 386, 401, 402, 404, 405, 406,
    407, 408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 425, 430, 432, 434,
    435, 440, 443, 469, 478, 479, 480, 484, 501, 502, 503, 504, 505, 507, 508,
    509, 510, 512, 513, 515, 516, 517, 518, 520, 530, 540, 541, 559, 561, 562,
    563, 567, 570, 571, 573, 574, 575, 580, 585, 586, 601, 602, 603, 605, 606,
    607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620, 623, 626, 630,
    631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 682, 701, 702, 703, 704,
    706, 707, 708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727, 731,
    732, 734, 740, 754, 757, 760, 763, 765, 770, 772, 773, 774, 775, 781, 785,
    786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814, 815, 816, 817,
    818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859, 860,
    862, 863, 864, 865, 870, 872, 878, 901, 903, 904, 906, 907, 908, 909, 910,
    912, 913, 914, 915, 916, 917, 918, 919, 920, 925, 928, 931, 936, 937, 940,
    941, 947, 949, 952, 954, 956, 970, 971, 972, 973, 978, 979, 980, 985, 989,
]

ALNUM = string.ascii_letters + string.digits


def e164(npa: int, line: int) -> str:
    """+1 NPA 555 01xx for line in 0..99."""
    return f"+1{npa}55501{line:02d}"


def spaced(number: str) -> str:
    """+12135550101 -> '+1 213-555-0101', as a person would type it."""
    d = number[2:]
    return f"+1 {d[0:3]}-{d[3:6]}-{d[6:10]}"


def number_pool(area_codes: list[int]) -> list[str]:
    """Every fictional number of the given area codes, interleaved so that
    consecutive entries differ in area code."""
    return [e164(npa, line) for line in range(100) for npa in area_codes]


def wide_pool(area_codes: list[int]) -> list[str]:
    """NPA-555-0000..9999 of the given area codes: 10,000 per code, for the
    memory inputs, which need a distinct number per user for up to a million
    users (more than the fictional 01xx block holds). These files stay on
    this machine: `validate` is offline and `plan` only reads from the local
    simulator."""
    return [f"+1{npa}555{line:04d}" for line in range(10_000) for npa in area_codes]


def write_probe(path: Path, area_codes: list[int]) -> None:
    """A CSV with the lowest and highest fictional number of each area code,
    for `okta-phone-migrate validate` to judge."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("user_id,new_phone\n")
        i = 0
        for npa in area_codes:
            for line in (0, 99):
                f.write(f"{user_id(i)},{spaced(e164(npa, line))}\n")
                i += 1


def probe_rows(area_codes: list[int]) -> list[int]:
    """Area code of each data row of the probe file, in order."""
    return [npa for npa in area_codes for _ in (0, 1)]


_ID_SALT = 0x5DEECE66D


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALNUM[r])
    return "".join(reversed(out))


def user_id(i: int) -> str:
    """A stable Okta-style user id: 00u + 17 alphanumerics, unique per i.
    Nine scrambled characters (a multiplicative hash of i) then eight that
    carry i itself in base 62, so ids never collide."""
    scrambled = ((i + _ID_SALT) * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    return "00u" + _base62(scrambled, 9) + _base62(i, 8)


def login(i: int, width: int) -> str:
    return f"u{i:0{width}d}@example.com"


def write_org_and_csv(
    org_path: Path | None,
    csv_path: Path,
    rows: int,
    pool: list[str],
    extra_users: int = 0,
    distinct: bool = True,
) -> None:
    """Users 0..rows-1 each hold an ACTIVE sms factor on an old number; the
    CSV asks for a new one. With `distinct`, old and new numbers are all
    different (needs 2*rows numbers); otherwise numbers repeat across users.
    `extra_users` adds users absent from the CSV (for a background client).
    Written streaming, so a million rows need little memory."""
    if distinct and 2 * rows > len(pool):
        raise SystemExit(f"need {2 * rows} distinct numbers, the pool has {len(pool)}")
    width = max(4, len(str(rows + extra_users - 1)))

    def old_new(i: int) -> tuple[str, str]:
        if distinct:
            return pool[2 * i], pool[2 * i + 1]
        return pool[(2 * i) % len(pool)], pool[(2 * i + 1) % len(pool)]

    with csv_path.open("w", encoding="utf-8", newline="") as f:
        f.write("user_id,new_phone\n")
        for i in range(rows):
            f.write(f"{user_id(i)},{spaced(old_new(i)[1])}\n")
    if org_path is None:
        return
    with org_path.open("w", encoding="utf-8") as f:
        f.write('{"users": [\n')
        for i in range(rows + extra_users):
            old = old_new(i)[0] if i < rows else pool[i % len(pool)]
            u = {
                "id": user_id(i),
                "status": "ACTIVE",
                "profile": {
                    "login": login(i, width),
                    "email": login(i, width),
                    "firstName": "Bench",
                    "lastName": f"User{i}",
                },
                "factors": [
                    {
                        "id": f"mbl{user_id(i)[3:]}",
                        "factorType": "sms",
                        "provider": "OKTA",
                        "status": "ACTIVE",
                        "profile": {"phoneNumber": old},
                    }
                ],
            }
            f.write(("," if i else "") + json.dumps(u, separators=(",", ":")) + "\n")
        f.write("]}\n")
