"""Plant simulator: PV, load, battery and DSO box, so the EMS runs without hardware."""
from .battery import ALARM_BITS, STATUS_TEXTS, BatteryModel
from .dso import DsoBox
from .plant import PlantSample, PlantSimulator, resolve_start_epoch_s
from .profiles import ProfileSeries, load_profile, pv_profile

__all__ = ["ALARM_BITS", "STATUS_TEXTS", "BatteryModel", "DsoBox", "PlantSample", "PlantSimulator",
           "ProfileSeries", "load_profile", "pv_profile", "resolve_start_epoch_s"]
