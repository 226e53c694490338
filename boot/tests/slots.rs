//! One contract, every slot backend: plain file, block-device mode (O_SYNC on
//! the same code path), and the strict NOR-flash model.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshota_boot::Error;
use meshota_boot::file::{Durability, FileSlot};
use meshota_boot::flash::{Geometry, NorFlash};
use meshota_boot::slot::{ERASED, Slot};

const SIZE: u64 = 4096;

fn contract(slot: &mut dyn Slot) {
    assert_eq!(slot.size(), SIZE);
    let es = slot.erase_size();
    assert!(es >= 1 && SIZE % es == 0);

    // erased_range_reads_back_as_ff
    slot.erase(0, SIZE).unwrap();
    let mut all = vec![0u8; SIZE as usize];
    slot.read(0, &mut all).unwrap();
    assert!(all.iter().all(|&b| b == ERASED));

    // write_after_erase_reads_back
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    slot.write(100, &data).unwrap();
    slot.flush().unwrap();
    let mut back = vec![0u8; data.len()];
    slot.read(100, &mut back).unwrap();
    assert_eq!(back, data);

    // out_of_bounds_access_is_refused_and_changes_nothing
    assert!(matches!(
        slot.write(SIZE - 1, &[0, 0]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        slot.read(u64::MAX, &mut [0]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        slot.erase(0, SIZE + es),
        Err(Error::OutOfBounds { .. })
    ));
    let mut last = [0u8; 1];
    slot.read(SIZE - 1, &mut last).unwrap();
    assert_eq!(last, [ERASED]);

    // erase_restores_erased_state_so_the_slot_can_be_rewritten
    slot.erase(0, SIZE).unwrap();
    slot.write(100, &[0x55; 10]).unwrap();
    let mut b = [0u8; 10];
    slot.read(100, &mut b).unwrap();
    assert_eq!(b, [0x55; 10]);

    // misaligned_erase_is_refused_where_sectors_exist
    if es > 1 {
        assert!(matches!(
            slot.erase(0, es / 2),
            Err(Error::Misaligned { .. })
        ));
        assert!(matches!(
            slot.erase(es / 2, es / 2),
            Err(Error::Misaligned { .. })
        ));
    }
}

#[test]
fn plain_file_slot_meets_the_slot_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = FileSlot::create(&dir.path().join("a.img"), SIZE).unwrap();
    contract(&mut s);
}

#[test]
fn block_device_mode_slot_meets_the_slot_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    drop(FileSlot::create(&path, 3 * SIZE).unwrap());
    // A partition in the middle of a "disk", opened O_SYNC like a block device.
    let mut s = FileSlot::open_region(&path, SIZE, Some(SIZE), Durability::SyncWrites).unwrap();
    assert_eq!(s.durability(), Durability::SyncWrites);
    contract(&mut s);
    // Neighbouring partitions were not touched.
    let mut whole = FileSlot::open_block_device(&path).unwrap();
    assert_eq!(whole.size(), 3 * SIZE);
    let mut b = vec![0u8; SIZE as usize];
    whole.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == ERASED));
    whole.read(2 * SIZE, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == ERASED));
}

#[test]
fn file_slot_with_erase_size_meets_the_slot_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.img");
    drop(FileSlot::create(&path, SIZE).unwrap());
    let mut s = FileSlot::open_file(&path).unwrap().with_erase_size(512);
    contract(&mut s);
}

#[test]
fn nor_flash_slot_meets_the_slot_contract() {
    for sector_size in [256u64, 1024, 4096] {
        let flash = NorFlash::new(Geometry {
            sector_size,
            sectors: 3 * SIZE / sector_size,
        });
        let mut s = flash
            .partition(SIZE / sector_size, SIZE / sector_size)
            .unwrap();
        contract(&mut s);
        let snap = flash.snapshot();
        assert!(
            snap[..SIZE as usize].iter().all(|&x| x == ERASED),
            "left neighbour untouched"
        );
        assert!(
            snap[2 * SIZE as usize..].iter().all(|&x| x == ERASED),
            "right neighbour untouched"
        );
    }
}

#[test]
fn region_past_the_end_of_the_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.img");
    drop(FileSlot::create(&path, SIZE).unwrap());
    assert!(matches!(
        FileSlot::open_region(&path, SIZE / 2, Some(SIZE), Durability::FsyncOnFlush),
        Err(Error::OutOfBounds { .. })
    ));
}
