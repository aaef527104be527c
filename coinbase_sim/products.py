"""The simulated product catalog: price level, tick size, volatility and liquidity.

Prices are handled as integer ticks and volumes as integer units of 1e-8 so
that aggregated candles are exact; this module only describes each product.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

VOLUME_DECIMALS = 8

# Probability that a child bucket holds trades, per level of the day -> 1h ->
# 30m -> 15m -> 5m -> 1m hierarchy (first entry: the day itself).  At least one
# child of a present parent is always present, so "absent iff all 1m children
# are absent" holds by construction.
LIQUIDITY: dict[str, tuple[float, float, float, float, float, float]] = {
    "high": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "mid": (1.0, 1.0, 1.0, 1.0, 1.0, 0.93),
    "low": (1.0, 0.97, 0.95, 0.9, 0.85, 0.6),
    "thin": (1.0, 0.8, 0.75, 0.7, 0.6, 0.35),
    "dust": (0.97, 0.5, 0.6, 0.55, 0.45, 0.35),
    # Trades a few hours a week: fewer than 60 5m candles even five days back.
    "ghost": (0.9, 0.12, 0.5, 0.5, 0.4, 0.35),
}


@dataclass(frozen=True)
class Product:
    """One tradable pair and the parameters that shape its synthetic history.

    The derived figures are cached per instance (computed once, not per rendered candle).
    """

    product_id: str
    price: Decimal  # long-run price level the walk reverts to
    tick: Decimal  # quote increment
    daily_vol: float  # standard deviation of daily log return
    daily_usd_volume: float  # typical traded quote volume per day
    liquidity: str = "high"

    @cached_property
    def tick_decimals(self) -> int:
        """Number of decimals needed to print a multiple of the tick exactly."""
        exponent = self.tick.normalize().as_tuple().exponent
        return max(0, -int(exponent))

    @cached_property
    def tick_units(self) -> int:
        """The tick as an integer count of 10**-tick_decimals."""
        return int(self.tick.scaleb(self.tick_decimals))

    @cached_property
    def base_ticks(self) -> int:
        """Long-run price level expressed in ticks."""
        return max(1, int(self.price / self.tick))

    @cached_property
    def daily_volume_units(self) -> int:
        """Typical daily base volume in 1e-8 units."""
        base = self.daily_usd_volume / float(self.price)
        return int(base * 10**VOLUME_DECIMALS)

    @cached_property
    def presence(self) -> tuple[float, float, float, float, float, float]:
        """Per-level presence probabilities (see LIQUIDITY)."""
        return LIQUIDITY[self.liquidity]


def _p(pid: str, price: str, tick: str, vol: float, usd: float, liq: str = "high") -> Product:
    return Product(pid, Decimal(price), Decimal(tick), vol, usd, liq)


CATALOG: tuple[Product, ...] = (
    _p("BTC-USD", "95000", "0.01", 0.030, 1.5e9),
    _p("ETH-USD", "3300", "0.01", 0.040, 8e8),
    _p("SOL-USD", "180", "0.01", 0.050, 4e8),
    _p("XRP-USD", "2.2", "0.0001", 0.050, 3e8),
    _p("ADA-USD", "0.85", "0.0001", 0.050, 6e7, "mid"),
    _p("DOGE-USD", "0.32", "0.00001", 0.060, 1.5e8),
    _p("AVAX-USD", "35", "0.01", 0.055, 5e7, "mid"),
    _p("LINK-USD", "20", "0.001", 0.050, 6e7, "mid"),
    _p("DOT-USD", "6.5", "0.001", 0.050, 2e7, "mid"),
    _p("LTC-USD", "100", "0.01", 0.045, 5e7, "mid"),
    _p("BCH-USD", "420", "0.01", 0.045, 3e7, "mid"),
    _p("POL-USD", "0.45", "0.0001", 0.055, 1e7, "low"),
    _p("UNI-USD", "12", "0.001", 0.055, 2e7, "mid"),
    _p("ATOM-USD", "6.5", "0.001", 0.050, 1e7, "low"),
    _p("XLM-USD", "0.4", "0.000001", 0.050, 2e7, "mid"),
    _p("ETC-USD", "26", "0.01", 0.050, 8e6, "low"),
    _p("FIL-USD", "5", "0.001", 0.055, 8e6, "low"),
    _p("AAVE-USD", "300", "0.01", 0.055, 3e7, "mid"),
    _p("ALGO-USD", "0.35", "0.0001", 0.055, 6e6, "low"),
    _p("NEAR-USD", "5", "0.001", 0.055, 1.5e7, "mid"),
    _p("APT-USD", "9", "0.01", 0.060, 1e7, "low"),
    _p("ARB-USD", "0.7", "0.0001", 0.060, 1e7, "low"),
    _p("OP-USD", "1.9", "0.001", 0.060, 8e6, "low"),
    _p("SHIB-USD", "0.00002", "0.00000001", 0.060, 2e7, "mid"),
    _p("ICP-USD", "10", "0.001", 0.060, 6e6, "low"),
    _p("BTC-EUR", "88000", "0.01", 0.030, 8e7, "mid"),
    _p("ETH-EUR", "3050", "0.01", 0.040, 3e7, "mid"),
    _p("BTC-USDC", "95000", "0.01", 0.030, 2e8),
    _p("ETH-BTC", "0.035", "0.00001", 0.030, 1e7, "low"),
    _p("USDT-USD", "1.0", "0.00001", 0.0005, 1e8),
    _p("USDT-USDC", "1.0", "0.0001", 0.0003, 2e7, "mid"),
    _p("SUI-USD", "4", "0.0001", 0.065, 5e7, "mid"),
    _p("SEI-USD", "0.4", "0.0001", 0.070, 5e6, "low"),
    _p("INJ-USD", "22", "0.01", 0.065, 5e6, "low"),
    _p("TIA-USD", "5", "0.001", 0.070, 4e6, "low"),
    _p("RENDER-USD", "7", "0.001", 0.065, 6e6, "low"),
    _p("GRT-USD", "0.2", "0.0001", 0.060, 4e6, "low"),
    _p("SAND-USD", "0.5", "0.0001", 0.060, 3e6, "thin"),
    _p("MANA-USD", "0.5", "0.0001", 0.060, 3e6, "thin"),
    _p("AXS-USD", "6", "0.01", 0.060, 2e6, "thin"),
    _p("COMP-USD", "70", "0.01", 0.060, 3e6, "thin"),
    _p("SNX-USD", "2", "0.001", 0.065, 2e6, "thin"),
    _p("LDO-USD", "1.8", "0.001", 0.065, 5e6, "low"),
    _p("HBAR-USD", "0.28", "0.00001", 0.060, 2e7, "mid"),
    _p("BONK-USD", "0.00003", "0.00000001", 0.080, 1e7, "low"),
    _p("PEPE-USD", "0.000018", "0.00000001", 0.080, 1.5e7, "low"),
    _p("1INCH-USD", "0.4", "0.001", 0.060, 1.5e6, "thin"),
    _p("XTZ-USD", "1.2", "0.001", 0.055, 2e6, "thin"),
    _p("BAT-USD", "0.25", "0.00001", 0.055, 1e6, "thin"),
    _p("ZEC-USD", "50", "0.01", 0.060, 4e6, "low"),
    _p("DASH-USD", "35", "0.01", 0.055, 1e6, "thin"),
    _p("FET-USD", "1.3", "0.0001", 0.070, 8e6, "low"),
    _p("STX-USD", "1.5", "0.0001", 0.065, 3e6, "thin"),
    _p("IMX-USD", "1.4", "0.0001", 0.065, 3e6, "thin"),
    _p("ENS-USD", "30", "0.01", 0.065, 2e6, "thin"),
    _p("RARE-USD", "0.09", "0.0001", 0.080, 2e5, "dust"),
    _p("DUST-USD", "0.05", "0.0001", 0.080, 5e4, "dust"),
    _p("GHOST-USD", "0.02", "0.0001", 0.090, 1e4, "ghost"),
)

PRODUCTS: dict[str, Product] = {p.product_id: p for p in CATALOG}

SYNTHETIC_PREFIX = "SYN"
MAX_SYNTHETIC = 9999


def synthetic_products(count: int) -> tuple[Product, ...]:
    """`count` extra liquid products SYN0001-USD, SYN0002-USD, ... for scale runs.

    Deterministic (the same count gives the same products): price level, tick and
    volatility cycle through a few realistic shapes; every one trades in every bucket,
    so a fetch of n buckets returns n candles.
    """
    if not 0 <= count <= MAX_SYNTHETIC:
        raise ValueError(f"synthetic product count must be within [0, {MAX_SYNTHETIC}]")
    shapes = (("120", "0.01"), ("3.5", "0.001"), ("0.42", "0.0001"), ("2400", "0.01"))
    out = []
    for i in range(1, count + 1):
        price, tick = shapes[i % len(shapes)]
        out.append(
            _p(
                f"{SYNTHETIC_PREFIX}{i:04d}-USD",
                price,
                tick,
                0.04 + (i % 5) * 0.005,
                2e7 + (i % 7) * 5e6,
            )
        )
    return tuple(out)


def catalog(synthetic: int = 0) -> tuple[Product, ...]:
    """The fixed catalog plus `synthetic` generated products."""
    return CATALOG + synthetic_products(synthetic) if synthetic else CATALOG
