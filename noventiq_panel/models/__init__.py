"""All tables. Importing this package registers every table on ``SQLModel.metadata``."""

from sqlmodel import SQLModel

from .analytics import *  # noqa: F401,F403
from .anomalies import *  # noqa: F401,F403
from .billing import *  # noqa: F401,F403
from .catalog import *  # noqa: F401,F403
from .gateways import *  # noqa: F401,F403
from .microsoft import *  # noqa: F401,F403
from .notify import *  # noqa: F401,F403
from .operations import *  # noqa: F401,F403
from .org import *  # noqa: F401,F403
from .provisioning import *  # noqa: F401,F403
from .subscription import *  # noqa: F401,F403
from .types import Money, Price, ScaledDecimal, UTCDateTime, utcnow  # noqa: F401
from .usage import *  # noqa: F401,F403

metadata = SQLModel.metadata
