"""The AirNet network, one module per concept."""

from airnet_restore.models.airnet import AirNet, AirNetConfig
from airnet_restore.models.dcn import DCNLayer
from airnet_restore.models.encoder import CBDE, MoCo, ResBlock, ResEncoder
from airnet_restore.models.restorer import DGB, DGG, DGM, DGRN, SFTLayer

__all__ = ["CBDE", "DGB", "DGG", "DGM", "DGRN", "AirNet", "AirNetConfig", "DCNLayer", "MoCo", "ResBlock", "ResEncoder", "SFTLayer"]
